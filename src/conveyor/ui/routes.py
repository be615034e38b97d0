"""The UI's pages and buttons. Each page calls the API's own handlers with the logged-in
token's principal, so it sees exactly what the API would show that token (roles, team
isolation, 404 for another team's objects); each button is a form POST with the
session's CSRF token, carried out by the same handler as its API route."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from ansi2html import Ansi2HTMLConverter
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from conveyor.api.errors import ApiError, answer_of
from conveyor.api.state import Coordinator, State, principal_of
from conveyor.deploy.artifacts import listing as artifact_listing
from conveyor.deploy.dora import team_figures
from conveyor.deploy.requests import find_environment
from conveyor.domain.deploy import Control
from conveyor.domain.errors import NotFound, Refused
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.domain.status import JobStatus
from conveyor.policy import audit
from conveyor.policy.access import project_named
from conveyor.protocol.api import (
    DIGEST,
    AnalysisRunOut,
    JudgementOut,
    RunFilter,
)
from conveyor.scheduler import runners
from conveyor.storage import deployments, environments, projects
from conveyor.storage import jobs as job_rows
from conveyor.storage.environments import ActionRecord
from conveyor.storage.jobs import JobBrief
from conveyor.storage.logs import read_log
from conveyor.ui import charts, graph, session, words

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["quote"] = quote
templates.env.globals["describe"] = words.describe
templates.env.globals["took"] = words.took
templates.env.filters["when"] = words.when
templates.env.filters["measured"] = words.measured
templates.env.filters["bytes"] = words.size
templates.env.filters["span"] = words.span
templates.env.filters["starter"] = words.starter
FINAL_RUNS = frozenset({"success", "failed", "canceled", "skipped"})
PAGE = 50
"""Rows of a listing page."""


REFUSALS = (ApiError, Refused)
"""What the services (domain.errors) and the API's checks refuse with."""


def _refusal(exc: ApiError | Refused, back: str) -> dict[str, Any]:
    """An error page's context: the refusal's message and status (as the API answers
    it), and where to go back."""
    if isinstance(exc, ApiError):
        return {"message": str(exc.detail), "status": exc.status, "back": back}
    return {"message": str(exc), "status": answer_of(exc)[0], "back": back}


class Page(APIRoute):
    """A UI route: no session sends the browser to /login; a refusal (404 for another
    team's object, 403 for a role too low, 409 …) is an HTML page with the API's
    message and status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except LoginRequired:
                return RedirectResponse("/login", status_code=303)
            except REFUSALS as exc:
                page = _refusal(exc, "/")
                return templates.TemplateResponse(
                    request, "error.html", page, status_code=page["status"]
                )

        return handler


router = APIRouter(include_in_schema=False, route_class=Page)
LOG_POLL_S = 0.2
LOG_BATCH_BYTES = 256 * 1024
"""A log event carries at most this much: a fast job's lines arrive in batches."""


class LoginRequired(Exception):
    """No (valid) session: the page sends the browser to /login."""


async def _who(request: Request, state: Coordinator) -> tuple[Principal, session.Login]:
    login = session.open_cookie(state.secrets, request.cookies.get(session.COOKIE))
    if login is None:
        raise LoginRequired
    try:
        return await principal_of(state, login.token), login
    except ApiError as exc:
        if exc.status == 401:
            raise LoginRequired from exc
        raise


def _page(
    request: Request, name: str, who: Principal, login: session.Login, **context: Any
) -> HTMLResponse:
    context |= {
        "who": who,
        "csrf": login.csrf,
        "can_develop": who.role >= Role.DEVELOPER,
        "can_maintain": who.role >= Role.MAINTAINER,
    }
    return templates.TemplateResponse(request, name, context)


async def _checked(request: Request, state: Coordinator) -> tuple[Principal, session.Login]:
    """The principal of a form POST, whose CSRF token must match the session's."""
    who, login = await _who(request, state)
    form = await request.form()
    sent = form.get(session.CSRF_FIELD) or request.headers.get(session.CSRF_HEADER)
    if not session.csrf_ok(login, sent if isinstance(sent, str) else None):
        raise ApiError(403, "forbidden", "this form is stale or not ours (CSRF): reload the page")
    return who, login


async def _act(
    request: Request,
    state: Coordinator,
    action: Callable[[Principal], Awaitable[object]],
    back: str,
) -> Response:
    """Carry out a button's action, then back to the page; a refusal is shown there."""
    who, login = await _checked(request, state)
    try:
        await action(who)
    except REFUSALS as exc:
        page = _refusal(exc, back)
        response = _page(request, "error.html", who, login, **page)
        response.status_code = page["status"]
        return response
    return RedirectResponse(back, status_code=303)


# -- login -------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/login")
async def login(
    request: Request, state: State, token: Annotated[str, Form(max_length=500)]
) -> Response:
    """Log in with a team or admin token; a runner's token is refused."""
    try:
        who = await principal_of(state, token.strip())
    except ApiError:
        who = None
    if who is None or who.runner is not None:
        return templates.TemplateResponse(
            request, "login.html", {"error": "unknown token"}, status_code=401
        )
    value, _ = session.seal(state.secrets, token.strip())
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        session.COOKIE,
        value,
        max_age=session.LIFETIME_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    await _checked(request, state)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(session.COOKIE)
    return response


# -- overview ----------------------------------------------------------------------------


async def _projects_page(
    state: Coordinator, who: Principal, q: str, page: int, size: int
) -> tuple[list[tuple[Any, Any]], int, bool]:
    """A page of the projects the token may see whose `team/name` holds `q` (any case):
    the rows, how many match in all, and whether a next page exists."""
    async with state.db.transaction() as db:
        every = await projects.listing(db, only=who.team_id, every=who.is_admin)
    wanted = q.strip().lower()
    found = [(p, t) for p, t in every if wanted in f"{t.name}/{p.name}".lower()]
    return found[(page - 1) * size : page * size], len(found), len(found) > page * size


@router.get("/")
async def overview(
    request: Request,
    state: State,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """My teams and services: each one's last run on its default branch, and per
    environment what runs there, with a rollback button; searched and paged."""
    who, login = await _who(request, state)
    rows, total, more = await _projects_page(state, who, q, page, OVERVIEW_PAGE)
    services = []
    for project, team in rows:
        last = RunFilter(ref="main", limit=1)
        latest = await state.runs.page(who, last, (team.name, project.name))
        envs = await state.deploys.environments(who, team.name, project.name)
        run = next(iter(latest.items), None)
        services.append({"project": project, "team": team, "run": run, "envs": envs})
    teams = sorted({team.name for _, team in rows})
    dora = {}
    for name in teams:
        try:
            dora[name] = await team_figures(state.db, who, name, "30d")
        except Refused:  # a viewer of another team's project cannot see its team's figures
            continue
    return _page(
        request,
        "overview.html",
        who,
        login,
        services=services,
        dora=dora,
        q=q,
        page=page,
        more=more,
        total=total,
    )


OVERVIEW_PAGE = 20
"""Services per page of the overview (each one reads its runs and environments)."""


@router.get("/projects")
async def project_list(
    request: Request,
    state: State,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """Every project the token may see, searched by name and paged."""
    who, login = await _who(request, state)
    rows, total, more = await _projects_page(state, who, q, page, PAGE)
    context = {"rows": rows, "q": q, "page": page, "more": more, "total": total}
    return _page(request, "projects.html", who, login, **context)


@router.get("/runners")
async def runner_list(request: Request, state: State) -> HTMLResponse:
    """The runners: the team's and the shared ones (the admin: every one)."""
    who, login = await _who(request, state)
    rows = await runners.listing(state.db, who)
    return _page(request, "runners.html", who, login, rows=rows)


@router.get("/hosts")
async def host_list(request: Request, state: State) -> HTMLResponse:
    """The fleet's hosts: the team's and its shared pools' (the admin: every one)."""
    who, login = await _who(request, state)
    rows = await state.fleet.hosts_out(who)
    return _page(request, "hosts.html", who, login, rows=rows)


@router.get("/audit")
async def audit_log(
    request: Request,
    state: State,
    team: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    """A team's audit log (its maintainers), or the company's (the admin), paged."""
    who, login = await _who(request, state)
    async with state.db.transaction() as db:
        teams = [t.name for t in await projects.teams(db, only=who.team_id, every=who.is_admin)]
    chosen = team or (None if who.is_admin else next(iter(teams), None))
    if chosen is None:
        found = await audit.company_page(state.db, who, after, PAGE)
    else:
        found = await audit.team_page(state.db, who, chosen, after, PAGE)
    context = {"found": found, "teams": teams, "team": chosen, "after": after}
    return _page(request, "audit.html", who, login, **context)


# -- runs --------------------------------------------------------------------------------


@router.get("/p/{team}/{project}")
async def project_runs(
    request: Request,
    team: str,
    project: str,
    state: State,
    status: str | None = None,
    ref: str | None = None,
    event: str | None = None,
    cursor: uuid.UUID | None = None,
) -> HTMLResponse:
    """A project's runs, newest first, filtered by status, ref and event, paged."""
    who, login = await _who(request, state)
    filters = RunFilter(
        status=status or None, ref=ref or None, event=event or None, cursor=cursor, limit=50
    )
    page = await state.runs.page(who, filters, (team, project))
    return _page(
        request,
        "runs.html",
        who,
        login,
        team=team,
        project=project,
        page=page,
        filters=filters,
    )


@router.get("/p/{team}/{project}/environments")
async def project_environments(
    request: Request, team: str, project: str, state: State
) -> HTMLResponse:
    """The project's environments: what runs in each, its phase and split."""
    who, login = await _who(request, state)
    envs = await state.deploys.environments(who, team, project)
    return _page(request, "environments.html", who, login, team=team, project=project, envs=envs)


@router.get("/p/{team}/{project}/artifacts")
async def project_artifacts(
    request: Request, team: str, project: str, state: State
) -> HTMLResponse:
    """The project's artifacts, newest first, with their provenance."""
    who, login = await _who(request, state)
    rows = await artifact_listing(state.db, who, team, project, 200)
    return _page(request, "artifacts.html", who, login, team=team, project=project, rows=rows)


@router.get("/runs/{run_id}")
async def run_view(request: Request, run_id: uuid.UUID, state: State) -> HTMLResponse:
    """A run: the graph of its jobs with their status, each job's attempts, reports and
    gates; retry, cancel and play."""
    who, login = await _who(request, state)
    return _page(request, "run.html", who, login, **await _run_context(state, who, run_id))


@router.get("/runs/{run_id}/graph")
async def run_graph(request: Request, run_id: uuid.UUID, state: State) -> HTMLResponse:
    """The graph and the jobs' table alone, for the page's live refresh."""
    who, login = await _who(request, state)
    return _page(request, "run_live.html", who, login, **await _run_context(state, who, run_id))


async def _run_context(state: Coordinator, who: Principal, run_id: uuid.UUID) -> dict[str, Any]:
    run = await state.runs.run(who, run_id)
    async with state.db.transaction() as db:
        states = await job_rows.run_jobs(db, run_id)
        deployed = await deployments.of_jobs(db, [j.id for j in run.jobs])
    needs = {j.name: tuple(j.spec.get("needs", ())) for j in states}
    laid = graph.layout([j.name for j in run.jobs], needs)
    by_name = {j.name: j for j in run.jobs}
    base = f"/p/{quote(run.team)}/{quote(run.project)}/env/"
    links = {
        j.name: (f"{base}{quote(deployed[j.id][0])}", *deployed[j.id])
        for j in run.jobs
        if j.id in deployed
    }
    return {
        "run": run,
        "graph": laid,
        "jobs": by_name,
        "deployments": links,
        "box": (graph.WIDTH, graph.HEIGHT),
        "final": run.status in FINAL_RUNS,
    }


@router.post("/runs/{run_id}/retry")
async def retry(request: Request, run_id: uuid.UUID, state: State) -> Response:
    made: dict[str, Any] = {}

    async def act(who: Principal) -> None:
        made["id"] = (await state.runs.retry(who, run_id)).id

    response = await _act(request, state, act, f"/runs/{run_id}")
    if isinstance(response, RedirectResponse) and "id" in made:
        return RedirectResponse(f"/runs/{made['id']}", status_code=303)
    return response


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: uuid.UUID, state: State) -> Response:
    return await _act(request, state, lambda who: state.runs.cancel(who, run_id), f"/runs/{run_id}")


@router.post("/jobs/{job_id}/play")
async def play(request: Request, job_id: uuid.UUID, state: State) -> Response:
    back = request.headers.get("referer") or "/"
    return await _act(request, state, lambda who: state.runs.play(who, job_id), back)


# -- logs --------------------------------------------------------------------------------


@router.get("/jobs/{job_id}")
async def job_log(request: Request, job_id: uuid.UUID, state: State) -> HTMLResponse:
    """A job's log, live: lines arrive through server-sent events with their colours."""
    who, login = await _who(request, state)
    row = await _job(state, who, job_id)
    return _page(request, "log.html", who, login, job=row, job_id=job_id)


async def _job(state: Coordinator, who: Principal, job_id: uuid.UUID) -> JobBrief:
    async with state.db.transaction() as db:
        row = await job_rows.brief(db, job_id)
    if row is None or not who.can_see(row.team_id):
        raise NotFound("no such job")
    return row


@router.get("/jobs/{job_id}/log.txt")
async def job_log_download(request: Request, job_id: uuid.UUID, state: State) -> Response:
    who, _ = await _who(request, state)
    await _job(state, who, job_id)
    async with state.db.transaction() as db:
        data = await read_log(db, job_id)
    return PlainTextResponse(
        data.decode("utf-8", "replace"),
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
    )


@router.get("/jobs/{job_id}/log/events")
async def job_log_events(
    request: Request,
    job_id: uuid.UUID,
    state: State,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """The log as server-sent events of HTML: `lines` events carry whole lines, their
    ANSI colours turned into escaped HTML (ansi2html), and their first line's number;
    `end` carries the job's final status. A reconnect resumes from `Last-Event-ID`."""
    who, _ = await _who(request, state)
    await _job(state, who, job_id)
    resume = request.headers.get("last-event-id", "")
    start = int(resume) if resume.isdigit() else offset
    converter = Ansi2HTMLConverter(inline=True, escaped=True)

    async def events() -> AsyncIterator[str]:
        position, number = start, None
        yield ": open\n\n"
        while not await request.is_disconnected():
            async with state.db.transaction() as db:
                data = await read_log(db, job_id, position)
                status = await job_rows.status_of(db, job_id)
            ended = status is None or JobStatus(status).is_final
            whole = data[:LOG_BATCH_BYTES]
            cut = whole.rfind(b"\n") + 1 if not ended or len(data) > LOG_BATCH_BYTES else len(whole)
            if cut:
                chunk = whole[:cut]
                lines = chunk.decode("utf-8", "replace").splitlines()
                html = [converter.convert(line, full=False) for line in lines]
                if number is None:
                    async with state.db.transaction() as db:
                        before = await read_log(db, job_id, 0) if position else b""
                    number = before[:position].count(b"\n") + 1
                body = json.dumps({"first": number, "lines": html})
                position += cut
                number += len(lines)
                yield f"id: {position}\nevent: lines\ndata: {body}\n\n"
                continue
            if ended:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            await asyncio.sleep(LOG_POLL_S)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


# -- environments ------------------------------------------------------------------------


@router.get("/p/{team}/{project}/env/{environment}")
async def environment_view(
    request: Request, team: str, project: str, environment: str, state: State
) -> HTMLResponse:
    """An environment: its split and instances, the deployment's steps, analyses and
    actions, live; promote, pause, resume, abort and rollback."""
    who, login = await _who(request, state)
    context = await _environment_context(state, who, team, project, environment)
    return _page(request, "environment.html", who, login, **context)


@router.get("/p/{team}/{project}/env/{environment}/live")
async def environment_live(
    request: Request, team: str, project: str, environment: str, state: State
) -> HTMLResponse:
    who, login = await _who(request, state)
    context = await _environment_context(state, who, team, project, environment)
    return _page(request, "environment_live.html", who, login, **context)


async def _environment_context(
    state: Coordinator, who: Principal, team: str, project: str, environment: str
) -> dict[str, Any]:
    status = await state.deploys.environment(who, team, project, environment)
    analysis, drawn = None, {}
    if status.deployment is not None:
        found = uuid.UUID(status.deployment.id)
        analysis = await state.deploys.analysis(who, found, CHART_EVALUATIONS)
        drawn = {run.key: _charts(run) for run in analysis.runs}
    timeline = await _timeline(state, who, team, project, environment, TIMELINE, None)
    return {
        "charts": drawn,
        "timeline": timeline,
        "team": team,
        "project": project,
        "environment": environment,
        "status": status,
        "analysis": analysis,
        "base": f"/p/{quote(team)}/{quote(project)}/env/{quote(environment)}",
    }


@router.get("/p/{team}/{project}/env/{environment}/timeline")
async def environment_timeline(
    request: Request,
    team: str,
    project: str,
    environment: str,
    state: State,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Everything the environment's driver did, newest first, in words, a page at a time."""
    who, login = await _who(request, state)
    timeline = await _timeline(state, who, team, project, environment, PAGE, before)
    context = {
        "team": team,
        "project": project,
        "environment": environment,
        "timeline": timeline,
        "older": timeline[-1].seq if len(timeline) == PAGE else None,
        "base": f"/p/{quote(team)}/{quote(project)}/env/{quote(environment)}",
    }
    return _page(request, "timeline.html", who, login, **context)


async def _timeline(
    state: Coordinator,
    who: Principal,
    team: str,
    project: str,
    environment: str,
    limit: int,
    before: int | None,
) -> list[ActionRecord]:
    """The environment's driver actions, newest first (404 unless the token may see
    the project and the environment exists)."""
    async with state.db.transaction() as db:
        row, _ = await project_named(db, who, team, project, Role.VIEWER)
        env = await find_environment(db, row, environment)
        return await environments.actions(db, env.id, limit, before)


CHART_EVALUATIONS = 120
"""An analysis chart's evaluations: two minutes at one a second."""
TIMELINE = 15
"""The latest actions on an environment's page; its timeline page has them all."""


def _charts(run: AnalysisRunOut) -> list[charts.Chart]:
    """Each metric's canary and stable values over the run's evaluations, oldest first."""
    series: dict[str, list[charts.Point]] = {}
    last: dict[str, JudgementOut] = {}
    for evaluation in sorted(run.history, key=lambda e: e.seq):
        for judged in evaluation.judgements:
            point = charts.Point(evaluation.elapsed_s, judged.canary, judged.stable)
            series.setdefault(judged.metric, []).append(point)
            last[judged.metric] = judged
    return [
        charts.chart(metric, points, last[metric].threshold, last[metric].unit)
        for metric, points in series.items()
        if any(p.canary is not None or p.stable is not None for p in points)
    ]


COMMANDS = {
    "promote": Control.PROMOTE,
    "pause": Control.PAUSE,
    "resume": Control.RESUME,
    "abort": Control.ABORT,
}


@router.post("/p/{team}/{project}/env/{environment}/{command}")
async def environment_command(
    request: Request, team: str, project: str, environment: str, command: str, state: State
) -> Response:
    back = f"/p/{quote(team)}/{quote(project)}/env/{quote(environment)}"
    if command == "rollback":

        async def roll(who: Principal) -> None:
            await state.deploys.rollback(who, team, project, environment)

        return await _act(request, state, roll, back)
    if command not in COMMANDS:
        raise ApiError(404, "not_found", f"no command {command!r}")
    what = COMMANDS[command]
    return await _act(
        request,
        state,
        lambda who: state.deploys.control(who, team, project, environment, what),
        back,
    )


@router.get("/p/{team}/{project}/env/{environment}/risk")
async def risk_view(
    request: Request,
    team: str,
    project: str,
    environment: str,
    state: State,
    artifact: Annotated[str, Query(pattern=DIGEST)],
) -> HTMLResponse:
    """The risk of deploying an artifact there now, factor by factor."""
    who, login = await _who(request, state)
    scored = await state.deploys.risk(who, team, project, environment, artifact)
    context = {"team": team, "project": project, "environment": environment, "risk": scored}
    return _page(request, "risk.html", who, login, **context)


# -- approvals and deliveries ------------------------------------------------------------


@router.get("/approvals")
async def approvals(request: Request, state: State) -> HTMLResponse:
    """What waits for approval, with the risk score explained, and who may decide."""
    who, login = await _who(request, state)
    items = await state.deploys.inbox(who, every=True)
    return _page(request, "approvals.html", who, login, items=items)


@router.post("/approvals/{deployment_id}/{verdict}")
async def decide(
    request: Request, deployment_id: uuid.UUID, verdict: str, state: State
) -> Response:
    if verdict not in ("approve", "reject"):
        raise ApiError(404, "not_found", f"no decision {verdict!r}")
    form = await request.form()
    comment = str(form.get("comment", ""))[:2000]
    return await _act(
        request,
        state,
        lambda who: state.deploys.decide(who, deployment_id, verdict, comment),
        "/approvals",
    )


@router.get("/p/{team}/{project}/deliveries")
async def deliveries(request: Request, team: str, project: str, state: State) -> HTMLResponse:
    """The project's webhook deliveries: what each one did, and why."""
    who, login = await _who(request, state)
    rows = await state.runs.deliveries(who, team, project, 100)
    return _page(request, "deliveries.html", who, login, team=team, project=project, rows=rows)
