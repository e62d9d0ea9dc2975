"""The `wgan` command line: parse, call, print. No training logic lives here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, UsageError  # typer>=0.29 vendors click
from typer.core import TyperGroup

from wgan_cli import __version__
from wgan_cli.errors import Interrupted, WganError

#: Exit codes: 2 bad input, 3 the sweep finished but some runs diverged, 130 interrupted.
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class OneLineErrors(TyperGroup):
    """Command-line usage errors (an unknown option, a missing value) as one `error:` line.

    Typer would draw them in a multi-line box; every other mistake a user can make already
    ends in one `error: ...` line and exit code 2, so scripts and people see one shape.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command; in standalone mode print usage errors on one line and exit."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            # NoArgsIsHelpError has already printed the help (typer matches it by name too).
            if type(exc).__name__ != "NoArgsIsHelpError":
                typer.echo(f"error: {usage_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_line(exc: ClickException) -> str:
    """click's message on one line, plus where to read the command's options."""
    text = " ".join(exc.format_message().split())
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        text += f" (see {ctx.command_path} {ctx.help_option_names[0]})"
    return text


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train and sweep weight-clipped WGANs, and report what the clipping constant c does.",
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Experiment YAML (default: the built-in swiss-roll config)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field, e.g. --set train.steps=200. Repeatable."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="New results folder (default: results/<name>-<timestamp>)."),
]
DevicesOpt = Annotated[
    int | None,
    typer.Option(
        "--devices",
        min=1,
        help="Devices to shard the runs over (default: all; on a CPU, one per core). "
        "1 turns sharding off.",
    ),
]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a WganError into `error: ...` on stderr and exit code 2, with no traceback.

    Ctrl-C also ends with one line: what was already written stays, whole, in the folder.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WganError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Interrupted as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: rows already written are kept", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wgan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Train and sweep weight-clipped WGANs, and report what the clipping constant c does."""


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Option("--config", help="Experiment YAML file.")],
    set_: SetOpt = None,
    out: OutOpt = None,
    devices: DevicesOpt = None,
) -> None:
    """Train one run: the config's own constraint, c (or λ) and seed."""
    _start_jax(devices)
    from wgan_cli.sweep import Grid

    _sweep(config, Grid(), set_ or [], out, devices)


@app.command()
@user_errors
def sweep(
    config: ConfigOpt = None,
    c: Annotated[
        str | None,
        typer.Option("--c", help="Comma-separated clipping constants, e.g. 0.001,0.01,0.1."),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
    ] = None,
    constraint: Annotated[
        str | None,
        typer.Option(
            "--constraint",
            help="Comma-separated arms from clip, gp, sn, none (default: the config's).",
        ),
    ] = None,
    gp_lambda: Annotated[
        str | None,
        typer.Option("--gp-lambda", help="Comma-separated gradient-penalty weights, e.g. 1,10."),
    ] = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    devices: DevicesOpt = None,
    coordinator: Annotated[
        str | None,
        typer.Option(
            "--coordinator",
            help="Multi-host: HOST:PORT of host 0, which every host of the sweep reaches "
            "(jax.distributed). With --num-hosts and --host-id; every host runs the same "
            "command with the same --out on a shared file system.",
        ),
    ] = None,
    num_hosts: Annotated[
        int | None, typer.Option("--num-hosts", min=1, help="Multi-host: how many hosts.")
    ] = None,
    host_id: Annotated[
        int | None,
        typer.Option("--host-id", min=0, help="Multi-host: this host's index, 0 to N-1."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Finish the sweep in this results folder after a crash, kill or Ctrl-C: "
            "finished runs are kept, the others go on from their last checkpoint. Takes the "
            "sweep's settings from the folder, so no other option but --devices (and, for a "
            "multi-host sweep, the same --coordinator, --num-hosts and --host-id).",
        ),
    ] = None,
) -> None:
    """Train every arm x setting x seed into one results folder, one program per shape.

    The clip arm runs once per --c, the gp arm once per --gp-lambda, sn and none once each.
    Exit code 0: every run finished; 3: finished, but some runs diverged (named on stderr);
    2: bad input; 130: interrupted (resume with --resume).
    """
    cluster = _cluster(coordinator, num_hosts, host_id)
    if resume is not None:
        given = {"--config": config, "--c": c, "--seeds": seeds, "--constraint": constraint}
        given |= {"--gp-lambda": gp_lambda, "--set": set_, "--out": out}
        extra = [name for name, value in given.items() if value]
        if extra:
            raise WganError(
                f"--resume takes the sweep's settings from {resume}/sweep.yaml; drop {extra[0]}"
            )
        from wgan_cli.devices import stored_run_devices

        share = resume / "hosts" / str(cluster[2]) if cluster else resume
        devices = devices or stored_run_devices(share)
        _start_jax(devices, cluster)
        if cluster:
            from wgan_cli.multihost import resume_on_hosts

            _finish(resume_on_hosts(resume, (cluster[2], cluster[1]), _progress, devices))
        else:
            from wgan_cli.sweep import resume_sweep

            _finish(resume_sweep(resume, progress=_progress, devices=devices))
        return
    if cluster and out is None:
        raise WganError("--num-hosts needs --out: every host writes into the same folder")
    _start_jax(devices, cluster)
    from wgan_cli.sweep import Grid, parse_list

    grid = Grid(
        arms=[a.strip() for a in constraint.split(",")] if constraint is not None else None,
        cs=parse_list(c, "--c", float) if c is not None else None,
        gp_lambdas=parse_list(gp_lambda, "--gp-lambda", float) if gp_lambda is not None else None,
        seeds=parse_list(seeds, "--seeds", int) if seeds is not None else None,
    )
    _sweep(config, grid, set_ or [], out, devices, cluster)


@app.command()
@user_errors
def report(
    folders: Annotated[
        list[Path],
        typer.Argument(
            help="Results folder(s) written by train or sweep; several are compared in one "
            "report, each arm labelled with its folder's name.",
            metavar="FOLDER...",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write (default: the results folder; required with several folders).",
        ),
    ] = None,
    format_: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="md (report.md + plots/), html (self-contained report.html) or csv "
            "(summary.csv); repeat or comma-separate. Default: all three.",
        ),
    ] = None,
) -> None:
    """Summarise results folders: a table per arm, summary.csv, report.md, report.html, plots."""
    from wgan_cli.report import build_report, parse_formats

    formats = parse_formats(format_)
    for folder in folders:
        if not folder.is_dir():
            raise WganError(f"results folder not found: {folder}")
    if len(folders) > 1 and out is None:
        raise WganError(
            f"{len(folders)} results folders make one report: say where it goes with --out DIR"
        )
    result = build_report(folders, out, formats=formats)
    typer.echo(result.table)
    pngs = [p for p in result.files if p.suffix == ".png"]
    written = [str(p) for p in result.files if p.suffix != ".png"]
    if pngs:
        written.append(f"{len(pngs)} plots in {pngs[0].parent}")
    typer.echo(f"wrote {', '.join(written)}")


Cluster = tuple[str, int, int] | None  # (coordinator, host count, host index)


def _cluster(coordinator: str | None, num_hosts: int | None, host_id: int | None) -> Cluster:
    """The multi-host options, all three or none."""
    given = [v is not None for v in (coordinator, num_hosts, host_id)]
    if not any(given):
        return None
    if not all(given):
        raise WganError("--coordinator, --num-hosts and --host-id go together: give all three")
    if host_id >= num_hosts:
        raise WganError(f"--host-id {host_id}: must be below --num-hosts {num_hosts}")
    return coordinator, num_hosts, host_id


def _start_jax(devices: int | None, cluster: Cluster = None) -> None:
    """Before jax is imported: one CPU device per core unless sharding is off, and the
    on-disk compile cache; then, for a multi-host sweep, join the cluster."""
    from wgan_cli.devices import enable_compile_cache, use_host_devices

    if devices != 1:
        use_host_devices(devices)
    enable_compile_cache()
    if cluster:
        from wgan_cli.multihost import initialize

        initialize(*cluster)


def _sweep(
    config: Path | None,
    grid,
    sets: list[str],
    out: Path | None,
    devices: int | None,
    cluster: Cluster = None,
) -> None:
    from wgan_cli.config import load_raw, resolve
    from wgan_cli.sweep import check_grid, run_sweep

    raw = load_raw(config, sets)
    for warning in check_grid(raw, grid):
        typer.echo(f"warning: {warning}", err=True)
    if out is None:
        out = Path("results") / f"{resolve(raw).name}-{datetime.now():%Y%m%d-%H%M%S}"
    if cluster:
        from wgan_cli.multihost import sweep_on_hosts

        host = (cluster[2], cluster[1])
        _finish(sweep_on_hosts(raw, grid, out, host, _progress, devices))
    else:
        _finish(run_sweep(raw, grid, out, progress=_progress, devices=devices))


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finish(result) -> None:
    """The sweep's last lines; exit code 3 if any run diverged, so scripts notice."""
    run_steps = result.generator_steps
    if run_steps:
        typer.echo(
            f"{len(result.runs)} runs in {result.wall_s:.1f}s "
            f"({run_steps / result.wall_s:.1f} run-iterations/s) -> {result.folder}"
        )
    else:
        typer.echo(f"{len(result.runs)} runs, none left to train -> {result.folder}")
    diverged = [r["run_id"] for r in result.runs if r["status"] == "diverged"]
    typer.echo(f"next: wgan report {result.folder}")
    if diverged:
        typer.echo(f"diverged: {', '.join(diverged)}", err=True)
        raise typer.Exit(EXIT_DIVERGED)
