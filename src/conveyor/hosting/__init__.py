"""What runs on a host for the services it serves, the same code on an agent's host and
on the coordinator's own machine: instances as processes (`processes`, behind the
`Target` contract of `target`), and HAProxy holding environments' routing (`haproxy`,
behind the `TrafficRouter` contract of `routing`; its request log in `request_log`).
`fake_target` and `memory_router` are the fakes the fast tests use."""
