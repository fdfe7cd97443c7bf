"""Pure statistics: estimates, decisions, failure rates and the sequential rule. No stores, no I/O: the planner
(harness.run) and the report (harness.analysis) decide with the same functions."""
