"""Source-control intake: webhooks from GitHub, GitLab, Gitea, Bitbucket and bare git
repositories are verified, stored in a durable inbox deduplicated by delivery, then
translated into pipeline events."""
