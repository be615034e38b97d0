"""The deployment manager: on every replica, drivers (manager.py) that reconcile each
environment they hold by asking the planner (planner/) for one action at a time and
carrying it out (effects.py, with what context.py gives them) on a target (targets/)
behind a traffic router (router/). People's requests and controls are checked in
requests.py."""
