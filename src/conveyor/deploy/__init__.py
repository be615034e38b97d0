"""The deployment manager: a reconciler (manager.py) that drives each environment through
its strategy's steps (strategies.py) on a target (targets/) behind a traffic router
(router/)."""
