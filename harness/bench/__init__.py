"""The bench, `python -m harness.bench`: what the harness costs over the training it does. Developer tooling, at
the top layer; nothing in the harness imports it.

- `__main__`: the command line, its plans, and the loops compared trial by trial
- `study`: the default study timed as a user runs it (quiet, under load, with 1 or 2 workers) and its report
- `workers`: the bench's trials side by side in forked workers, as a study runs them
- `throughput`: the bare loops the harness is measured against, and images per second
- `report`: the figures as markdown, beside their targets
"""
