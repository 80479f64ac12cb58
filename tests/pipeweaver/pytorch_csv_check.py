"""Loads compute_only pipeline CSVs the way torch.distributed.pipelining's schedule runtime
does (_PipelineScheduleRuntime._load_csv: csv.reader, _Action.from_str per cell, then
_validate_schedule), lowers each to sends and receives (_add_send_recv) and dry-runs the
result (_simulate_comms_compute), all with PyTorch's own functions.

    python3 pytorch_csv_check.py FILE MICROBATCHES [FILE MICROBATCHES ...]

Prints one JSON object: per file, {"ranks": [[[stage, "F", microbatch], ...], ...]} (each
rank's actions as PyTorch parsed them) or {"error": "..."} (what PyTorch raised).
Exit 0 when it ran, 77 when torch (or one of those functions) is missing here: the reason
is printed on stdout.
"""
import csv
import json
import sys


def main(argv):
    try:
        from torch.distributed.pipelining import schedules as S

        parse = S._Action.from_str
        validate = S._validate_schedule
        lower = S._add_send_recv
        dry_run = S._simulate_comms_compute
        letters = {S.F: "F", S.B: "B", S.I: "I", S.W: "W"}
    except Exception as e:  # no torch, or a torch without these
        why = f"{type(e).__name__}: {e}"
        print(f"torch.distributed.pipelining's schedule functions are not importable ({why})")
        return 77
    out = {}
    for path, n_microbatches in zip(argv[0::2], argv[1::2]):
        try:
            actions = {}
            with open(path, newline="") as f:
                for rank, row in enumerate(csv.reader(f)):
                    actions[rank] = [parse(cell) for cell in row]
            stages = 1 + max(a.stage_index for row in actions.values() for a in row if a is not None)
            stage_to_rank = validate(actions, len(actions), stages, int(n_microbatches))
            compute = {r: [a for a in row if a is not None] for r, row in actions.items()}
            to_rank = stage_to_rank.__getitem__
            copy = {r: list(row) for r, row in compute.items()}  # the lowering consumes its input
            lowered = lower(copy, stage_to_rank=to_rank, num_stages=stages)
            dry_run(lowered, stage_to_rank=to_rank, num_stages=stages)
            out[path] = {
                "ranks": [
                    [[a.stage_index, letters.get(a.computation_type, "?"), a.microbatch_index] for a in row]
                    for _, row in sorted(compute.items())
                ]
            }
        except Exception as e:
            out[path] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
