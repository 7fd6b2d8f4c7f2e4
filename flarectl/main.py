"""`flarectl`: the typer application and its commands. Each command reads its
options, calls the control plane through `Client` and hands the result to
`render`; failures become `error: ...` on stderr and an exit code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ParamSpec

import typer

from flare.durations import DurationError, parse_seconds
from flare.money import MoneyError, parse_shorthand
from flare.v1 import (
    common_pb2,
    intent_pb2,
    intent_service_pb2,
    offer_service_pb2,
    telemetry_service_pb2,
)
from flarectl import config, render
from flarectl.client import ApiError, Client
from flarectl.errors import EXIT_CODE_HELP, CliError
from flarectl.intent_file import load_intent
from flarectl.names import parse_objective, parse_state, state_name, tenant_parent
from flarectl.render import Output
from flarectl.watching import Outcome, follow

_P = ParamSpec("_P")

EPILOG = "Exit codes: " + "; ".join(f"{code.value} {text}" for code, text in EXIT_CODE_HELP) + "."

app = typer.Typer(
    name="flarectl",
    help="The command-line client of FLARE: place GPU workloads by intent across a "
    "federation of providers.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
token_app = typer.Typer(
    help="Create, list and revoke API tokens.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(token_app, name="token")


# Option parsers: a bad value is a usage error (exit 2) that names the option.


def _state(text: str) -> intent_pb2.State.ValueType:
    try:
        return parse_state(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def _objective(text: str) -> intent_pb2.Objective.ValueType:
    try:
        return parse_objective(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def _duration(text: str) -> float:
    try:
        seconds = parse_seconds(text)
    except DurationError as error:
        raise typer.BadParameter(str(error)) from error
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r} must be longer than zero")
    return float(seconds)


def _money(text: str) -> common_pb2.Money:
    try:
        amount, currency = parse_shorthand(text)
    except MoneyError as error:
        raise typer.BadParameter(str(error)) from error
    return common_pb2.Money(amount=amount, currency_code=currency)


AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="HOST:PORT",
        help="gRPC address of the control plane, host:port "
        "(else FLARE_ADDRESS, the config file, 127.0.0.1:50051).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="Bearer token (else FLARE_TOKEN, the config file, the local admin token).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option("--output", "-o", help="table for people; json or yaml (protobuf JSON)."),
]
FileOption = Annotated[
    str,
    typer.Option(
        "--file",
        "-f",
        metavar="FILE",
        help="Intent file, YAML or JSON; '-' reads stdin.",
        show_default=False,
    ),
]
NameArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME",
        help="Intent name, tenants/T/intents/ID, or just the ID.",
        show_default=False,
    ),
]
StatesOption = Annotated[
    list[intent_pb2.State.ValueType] | None,
    typer.Option(
        "--state",
        parser=_state,
        metavar="STATE",
        help="Only intents in this state (repeatable): pending, queued, running, ...",
        show_default=False,
    ),
]


def reporting(command: Callable[_P, None]) -> Callable[_P, None]:
    """Turns a CliError into its message on stderr and its exit code."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CliError as error:
            for line in error.lines():
                typer.echo(line, err=True)
            raise typer.Exit(error.exit_code) from None

    return run


def connect(address: str | None, token: str | None) -> Client:
    connection = config.resolve(address, token, environ=os.environ, home=Path.home())
    return Client(connection)


def _now() -> datetime:
    return datetime.now(UTC)


@app.command(epilog=EPILOG)
@reporting
def apply(
    *,
    file: FileOption,
    intent_id: Annotated[
        str,
        typer.Option(
            "--id", metavar="ID", help="Id of the new intent (default: from the workload name)."
        ),
    ] = "",
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            metavar="KEY",
            help="Idempotency key (default: a hash of the intent and --id, so applying "
            "the same file again returns the same intent).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; store nothing.")
    ] = False,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Create the intent described in a file (again: returns the same intent)."""
    loaded = load_intent(file)
    key = loaded.request_id(intent_id) if request_id is None else request_id
    with connect(address, token) as client:
        response = client.create_intent(
            loaded.intent, intent_id=intent_id, request_id=key, validate_only=dry_run
        )
    intent = response.intent
    if output is not Output.TABLE:
        render.print_data(render.to_dict(intent), output)
    elif dry_run:
        render.write(f"intent from {loaded.source} is valid (dry run: nothing was stored)\n")
    elif response.created:
        render.write(f"intent {intent.name} created ({state_name(intent.state)})\n")
    else:
        render.write(
            f"intent {intent.name} unchanged ({state_name(intent.state)}): "
            f"applied before with request id {key}\n"
        )


@app.command(epilog=EPILOG)
@reporting
def plan(
    *,
    file: FileOption,
    top: Annotated[
        int, typer.Option("--top", min=1, max=50, metavar="N", help="Candidates to show.")
    ] = 5,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show where the intent in a file would go now, and why other offers do not fit.

    Nothing is stored or reserved."""
    loaded = load_intent(file)
    with connect(address, token) as client:
        result = client.plan_intent(loaded.intent, top_k=top)
    if output is Output.TABLE:
        render.show(*render.plan_view(result))
    else:
        render.print_data(render.to_dict(result), output)


@app.command(epilog=EPILOG)
@reporting
def get(
    name: NameArgument,
    *,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show one intent: state, placement, history and, when queued, why."""
    with connect(address, token) as client:
        intent = client.get_intent(name)
    if output is Output.TABLE:
        render.show(*render.intent_detail(intent))
    else:
        render.print_data(render.to_dict(intent), output)


@app.command("list", epilog=EPILOG)
@reporting
def list_intents(
    *,
    states: StatesOption = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, metavar="N", help="At most this many intents; 0 for all."),
    ] = 0,
    page_size: Annotated[
        int, typer.Option("--page-size", min=0, max=1000, metavar="N", help="Intents per request.")
    ] = 0,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List your intents, newest first."""
    with connect(address, token) as client:
        response = client.list_intents(states=states or [], limit=limit, page_size=page_size)
    if output is Output.TABLE:
        render.show(render.intents_table(response.intents, _now()))
    else:
        render.print_data({"intents": [render.to_dict(i) for i in response.intents]}, output)


@app.command(epilog=EPILOG)
@reporting
def watch(
    name: Annotated[
        str,
        typer.Argument(
            metavar="[NAME]",
            help="Intent name or id; all your intents when left out.",
            show_default=False,
        ),
    ] = "",
    *,
    from_revision: Annotated[
        int,
        typer.Option(
            "--from-revision",
            min=0,
            metavar="N",
            help="Replay the changes after this revision (0: start with the current state).",
        ),
    ] = 0,
    until: Annotated[
        list[intent_pb2.State.ValueType] | None,
        typer.Option(
            "--until",
            parser=_state,
            metavar="STATE",
            help="Stop at the first change into this state (repeatable); fail if the "
            "intent ends or --timeout passes first.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            parser=_duration,
            metavar="DURATION",
            help="Stop after this long, e.g. 30s or 5m.",
            show_default=False,
        ),
    ] = None,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Print every change of an intent (or of all) as it happens, until Ctrl-C.

    A watch of one intent also ends when the intent reaches a final state
    (succeeded, failed, cancelled). With --until STATE it ends at the first
    change into that state, and fails if the intent ends in another one or
    --timeout passes first."""
    header = [render.WATCH_HEADER] if output is Output.TABLE else []

    def on_event(event: intent_service_pb2.WatchIntentResponse) -> None:
        if output is Output.TABLE:
            lines = [*header, render.watch_line(event)]
            header.clear()
            render.write("\n".join(lines) + "\n")
        else:
            render.print_stream_item(event, output)

    def on_reconnect(error: ApiError, revision: int) -> None:
        render.write(
            f"warning: lost the connection ({error.headline}); retrying, to resume after "
            f"revision {revision}\n",
            err=True,
        )

    wanted = set(until or [])
    try:
        with connect(address, token) as client:
            outcome = follow(
                client,
                name,
                start_revision=from_revision,
                until=wanted,
                timeout=timeout,
                on_event=on_event,
                on_reconnect=on_reconnect,
            )
    except KeyboardInterrupt:
        return
    if wanted and outcome is not Outcome.REACHED:
        states = " or ".join(state_name(s) for s in sorted(wanted))
        why = "the intent ended" if outcome is Outcome.ENDED else "timed out"
        raise CliError(f"{why} before reaching {states}")


@app.command(epilog=EPILOG)
@reporting
def top(
    *,
    provider: Annotated[str, typer.Option("--provider", help="Only this provider.")] = "",
    node: Annotated[str, typer.Option("--node", help="Only this node.")] = "",
    gpu: Annotated[str, typer.Option("--gpu", help="Only this GPU model, e.g. h100.")] = "",
    intent: Annotated[
        str, typer.Option("--intent", help="Only the GPUs of this intent (its full name).")
    ] = "",
    once: Annotated[
        bool, typer.Option("--once", help="Print the current state once and exit.")
    ] = False,
    address: AddressOption = None,
    token: TokenOption = None,
) -> None:
    """The federation's GPUs live: utilisation, memory, temperature, power, health and
    the intent on each, refreshing in place until Ctrl-C. A tenant's token sees the
    GPUs of its own intents; an admin's sees every GPU."""
    from rich.live import Live

    from flarectl.top import TopView
    from flarectl.top import render as render_top

    request = telemetry_service_pb2.WatchUtilizationRequest(
        provider=provider, node=node, gpu_model=gpu, intent=intent
    )
    view = TopView()
    try:
        with connect(address, token) as client:
            events = client.watch_utilization(request)
            view.apply(next(events))
            if once:
                render.show(render_top(view))
                return
            with Live(
                render_top(view), console=render.console(), refresh_per_second=4, screen=False
            ) as live:
                for event in events:
                    view.apply(event)
                    live.update(render_top(view))
    except KeyboardInterrupt:
        return


@app.command(epilog=EPILOG)
@reporting
def cancel(
    name: NameArgument,
    *,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why; recorded in the intent's history.")
    ] = "",
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Cancel an intent and release its GPUs. Cancelling twice is not an error."""
    with connect(address, token) as client:
        intent = client.cancel_intent(name, reason=reason)
    if output is Output.TABLE:
        render.write(f"intent {intent.name} {state_name(intent.state)}\n")
    else:
        render.print_data(render.to_dict(intent), output)


@app.command(epilog=EPILOG)
@reporting
def offers(
    *,
    gpu: Annotated[
        str,
        typer.Option(
            "--gpu", metavar="MODEL", help="GPU model or alias: nvidia-h100, H100, a100-80gb."
        ),
    ] = "",
    count: Annotated[
        int, typer.Option("--count", min=0, metavar="N", help="GPUs needed on one offer.")
    ] = 0,
    location: Annotated[
        str,
        typer.Option(
            "--location", metavar="WHERE", help="EU, US, Europe, a country code or a region."
        ),
    ] = "",
    max_price: Annotated[
        common_pb2.Money | None,
        typer.Option(
            "--max-price",
            parser=_money,
            metavar="AMOUNT",
            help="Most per hour for --count GPUs (one GPU by default), e.g. '5 EUR'.",
            show_default=False,
        ),
    ] = None,
    providers: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            metavar="PROVIDER",
            help="Only this provider (repeatable).",
            show_default=False,
        ),
    ] = None,
    objective: Annotated[
        intent_pb2.Objective.ValueType | None,
        typer.Option(
            "--objective",
            parser=_objective,
            metavar="OBJECTIVE",
            help="Order: cost (default), performance, latency, energy or balanced.",
            show_default=False,
        ),
    ] = None,
    available: Annotated[
        bool, typer.Option("--available", help="Only offers with free GPUs.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, metavar="N", help="At most this many; 0 for all.")
    ] = 0,
    page_size: Annotated[
        int, typer.Option("--page-size", min=0, max=1000, metavar="N", help="Offers per request.")
    ] = 0,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List the federation's GPU offers that match, best first."""
    request = offer_service_pb2.ListOffersRequest(
        gpu=intent_pb2.GpuRequirements(model=gpu, count=count),
        constraints=intent_pb2.Constraints(location=location, providers=providers or []),
        objective=objective or intent_pb2.OBJECTIVE_UNSPECIFIED,
        available_only=available,
        page_size=page_size,
    )
    if max_price is not None:
        request.constraints.max_hourly_cost.CopyFrom(max_price)
    with connect(address, token) as client:
        response = client.list_offers(request, limit=limit)
    if output is not Output.TABLE:
        data = render.to_dict(response)
        data.setdefault("offers", [])
        render.print_data(data, output)
        return
    render.show(*render.offers_view(response))


@token_app.command("create", epilog=EPILOG)
@reporting
def token_create(
    *,
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="Scope to grant (repeatable): intents:read, intents:write, intents:delete, "
            "offers:read, tokens:manage, telemetry:write, admin. Default: the four "
            "everyday intents and offers scopes.",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option(
            "--ttl",
            parser=_duration,
            metavar="DURATION",
            help="Lifetime, e.g. 24h or 30d; no expiry when left out.",
            show_default=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            metavar="TENANT",
            help="Tenant of the token (admin only; creates it).",
            show_default=False,
        ),
    ] = None,
    display_name: Annotated[
        str, typer.Option("--name", metavar="TEXT", help="Display name, e.g. 'ci pipeline'.")
    ] = "",
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Create a token. Its secret is printed once and never again."""
    with connect(address, token) as client:
        response = client.create_token(
            display_name=display_name,
            scopes=scopes or [],
            ttl_seconds=ttl,
            parent=tenant_parent(tenant),
        )
    if output is not Output.TABLE:
        render.print_data(render.to_dict(response), output)
        return
    render.show(render.token_detail(response.token, _now()))
    render.write(f"secret: {response.secret}\n")
    render.write("store the secret now: it is not shown again\n", err=True)


@token_app.command("list", epilog=EPILOG)
@reporting
def token_list(
    *,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            metavar="TENANT",
            help="Another tenant's tokens (admin only).",
            show_default=False,
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired tokens.")
    ] = False,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List the tenant's active tokens (never their secrets)."""
    with connect(address, token) as client:
        response = client.list_tokens(parent=tenant_parent(tenant), show_inactive=show_all)
    if output is Output.TABLE:
        render.show(render.tokens_table(response.tokens, _now()))
    else:
        render.print_data({"tokens": [render.to_dict(t) for t in response.tokens]}, output)


@token_app.command("revoke", epilog=EPILOG)
@reporting
def token_revoke(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Token name, tenants/T/tokens/ID, or just the ID.",
            show_default=False,
        ),
    ],
    *,
    address: AddressOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Revoke a token at once. Revoking twice is not an error."""
    with connect(address, token) as client:
        revoked = client.revoke_token(name)
    if output is Output.TABLE:
        render.write(f"token {revoked.name} revoked\n")
    else:
        render.print_data(render.to_dict(revoked), output)


def main() -> None:
    app(prog_name="flarectl")
