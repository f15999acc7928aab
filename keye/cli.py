"""The `keye` command line. Heavy imports (torch, Kafka clients) happen inside each command."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from keye.settings import get_settings

app = typer.Typer(help="Keye video intelligence: analyze short videos with Keye-VL.", no_args_is_help=True)
stack_app = typer.Typer(help="The development stack: Kafka (KRaft), PostgreSQL, Redis on loopback.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()

Services = Annotated[list[str] | None, typer.Argument(help="kafka, postgres, redis (default: all)")]


def _check(only: list[str] | None) -> list[str] | None:
    from keye.stack import SERVICES

    unknown = [n for n in only or [] if n not in SERVICES]
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {unknown}; choose from {sorted(SERVICES)}")
    return only or None


@stack_app.command("up")
def stack_up(only: Services = None) -> None:
    """Start the services (idempotent) and wait until each answers."""
    from keye import stack

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
    from keye import stack

    for name, was_running in stack.down(get_settings(), _check(only)).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service; exit 1 when any is down."""
    from keye import stack

    states = stack.status(get_settings())
    _print_status(states)
    if any(v == "down" for v in states.values()):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env() -> None:
    """Print `export` lines that point the product and the tests at the stack."""
    from keye import stack

    for k, v in stack.env(get_settings()).items():
        print(f"export {k}={v}")


def _print_status(states: dict[str, str]) -> None:
    table = Table("service", "state")
    for name, state in states.items():
        table.add_row(name, state)
    console.print(table)


@app.command()
def bench(name: Annotated[str, typer.Argument(help="a script in bench/, e.g. kernels")],
          args: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Run a benchmark script from bench/ (each prints ratios against its own baseline)."""
    script = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    if not script.exists():
        available = sorted(p.stem for p in script.parent.glob("*.py") if not p.stem.startswith("_"))
        raise typer.BadParameter(f"no benchmark {name!r}; available: {available}")
    sys.argv = [str(script), *(args or [])]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
