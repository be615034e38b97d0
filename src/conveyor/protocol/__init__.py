"""The runner protocol: the bodies that cross between a runner and a coordinator, in one
typed place that the API routes, the scheduler and the runner all use (`runner`), and the
two errors a runner's write can meet (`errors`).

Requests that a runner sends forbid unknown fields (a typo is a 422, not a silent loss);
replies that it reads ignore them, so a runner of release N-1 keeps working against a
coordinator of release N that added a field (DESIGN.md section 7).
"""
