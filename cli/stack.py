"""`keye stack`: the development servers of devstack/, which only a source checkout has (the wheel
leaves them out, so a production install carries no pidfile manager)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.checkout import CHECKOUT
from service.settings import get_settings

stack_app = typer.Typer(
    help="The development stack: Kafka (KRaft), PostgreSQL, Redis on loopback.", no_args_is_help=True
)
console = Console()

Services = Annotated[list[str] | None, typer.Argument(help="kafka, postgres, redis (default: all)")]


def devstack() -> ModuleType:
    """The devstack package: importable as is under `python -m` in the checkout; for the installed
    `keye` script, from the checkout this command was installed from (editable install)."""
    try:
        return importlib.import_module("devstack")
    except ModuleNotFoundError as e:
        if e.name != "devstack" or not (CHECKOUT / "devstack" / "__init__.py").is_file():
            console.print(
                "[red]keye stack needs a source checkout:[/red] this install has no devstack package "
                "(the development servers are not part of the wheel)"
            )
            raise typer.Exit(2) from e
    sys.path.append(str(CHECKOUT))  # appended: installed packages still come first
    return importlib.import_module("devstack")


def _check(only: list[str] | None) -> list[str] | None:
    services = devstack().SERVICES
    unknown = [n for n in only or [] if n not in services]
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {unknown}; choose from {sorted(services)}")
    return only or None


@stack_app.command("up")
def stack_up(only: Services = None) -> None:
    """Start the services (idempotent) and wait until each answers."""
    stack = devstack()
    s = get_settings()
    try:
        stack.up(s, _check(only))
    except stack.StackError as e:
        console.print(f"[red]stack up failed:[/red] {e}")
        raise typer.Exit(1) from e
    _print_status(stack.status(s))


@stack_app.command("down")
def stack_down(only: Services = None) -> None:
    """Stop the services that run (idempotent)."""
    outcome = devstack().down(get_settings(), _check(only))
    for name, what in outcome.items():
        console.print(f"{name}: {what}", markup=False)
    if any(what.startswith("failed") for what in outcome.values()):
        raise typer.Exit(1)


@stack_app.command("status")
def stack_status() -> None:
    """Show each service; exit 1 when any is down."""
    states = devstack().status(get_settings())
    _print_status(states)
    if any(v == "down" for v in states.values()):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env() -> None:
    """Print `export` lines that point the product and the tests at the stack."""
    for k, v in devstack().env(get_settings()).items():
        print(f"export {k}={v}")


def _print_status(states: dict[str, str]) -> None:
    table = Table("service", "state")
    for name, state in states.items():
        table.add_row(name, state)
    console.print(table)
