"""One module per source-control provider; `PROVIDERS` names them for the endpoint."""

from __future__ import annotations

from conveyor.intake.providers.base import Provider
from conveyor.intake.providers.bitbucket import Bitbucket
from conveyor.intake.providers.git import BareGit
from conveyor.intake.providers.gitea import Gitea
from conveyor.intake.providers.github import GitHub
from conveyor.intake.providers.gitlab import GitLab

PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (GitHub(), GitLab(), Gitea(), Bitbucket(), BareGit())
}

__all__ = ["PROVIDERS", "Provider"]
