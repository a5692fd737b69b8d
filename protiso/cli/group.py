"""The `protiso` command group: one error path and clean help for every command.

Every failure ends in one line on stderr and a documented exit status (EXIT_CODES): a usage
error names the option and the command's --help (a global option given after the command says
where it goes); a ProtisoError, a file the system refuses or a DuckDB error is `error: ...`
(status 1); Ctrl-C says what was kept (130); anything else is a bug, reported in one line with
the way to see its traceback (PROTISO_DEBUG=1) and status 3.

Help: metavars read as values (PATH, INTEGER, a|b) instead of Python types, flags show none,
and `<...>` and `*` in help text survive the markdown rendering."""
from __future__ import annotations

import os
import re
import sys

import typer
from typer.core import TyperGroup

from protiso.cli.core import (_RUNNING, _path, ctrl_c_seen, err_console, error, handle_errors, interrupted_message,
                              notice_ctrl_c)

try:            # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as _cx
except ImportError:   # pragma: no cover - older typer on click
    from click import exceptions as _cx

EXIT_CODES = {0: "success", 1: "error (a one-line message on stderr says what and what to do)",
              2: "usage error (an unknown or invalid option or argument)",
              3: "internal error (a bug: PROTISO_DEBUG=1 shows the traceback; please report it)",
              130: "interrupted (Ctrl-C)"}
EPILOG = "Exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."

def _global_options(ctx) -> dict[str, str]:
    """--option -> its metavar ('' for flags) for the options of the top-level command."""
    root = ctx.find_root().command
    return {o: (p.metavar or "") for p in root.params for o in p.opts if o.startswith("--")}


def usage_line(exc: _cx.ClickException) -> str:
    """One line for a usage error: the message, a hint for a misplaced global option, and
    where the command's help is."""
    message = exc.format_message().strip().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _cx.NoSuchOption) and ctx is not None and ctx.parent is not None:
        name = exc.option_name.split("=")[0]
        options = _global_options(ctx)
        if name in options:
            value = f" {options[name]}" if options[name] else ""
            message = (f"{name} is a global option: put it before the command, as in "
                       f"`{ctx.find_root().info_name} {name}{value} {_sub_path(ctx)} ...`")
    if ctx is not None and isinstance(exc, _cx.UsageError):
        message += f" (see `{ctx.command_path} --help`)"
    return message


def _sub_path(ctx) -> str:
    root = ctx.find_root()
    return ctx.command_path[len(root.command_path):].strip()


_TYPE_LABELS = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN"}


def _label(param) -> str:
    """How a parameter's value reads in the help: its metavar, choices, or a type name."""
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        return ""
    if param.metavar:
        return param.metavar
    desc = getattr(param, "type_descriptor", None)
    if desc is None:   # pragma: no cover - older typer: click's own type names
        label = str(getattr(param.type, "name", "value")).upper()
    elif desc.is_choice:
        label = "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    elif desc.is_path:
        label = "PATH"
    else:
        ann = desc.annotation
        args = getattr(ann, "__args__", None)
        if desc.is_list and args:
            ann = args[0]
        label = _TYPE_LABELS.get(ann, "PATH" if "Path" in str(ann) else "VALUE")
    return label + ("..." if param.nargs == -1 else "")


_CODE = re.compile(r"(`[^`]*`)")


def markdown_safe(text: str | None) -> str | None:
    """Help text with `<`, `>` and `*` escaped outside `code`, so markdown keeps them."""
    if not text:
        return text
    parts = _CODE.split(text)
    return "".join(p if p.startswith("`") else re.sub(r"(?<!\\)([<>*])", r"\\\1", p) for p in parts)


LONG_DEFAULT = 30   # a longer default is shown in the help text, where it wraps, not cut with '…'


def _long_default_into_help(param) -> None:
    """Show a long default (a comma-separated list of models) at the end of the option's help
    text, with a space after each comma so it wraps; Rich would cut `[default: ...]` with '…'."""
    default = getattr(param, "default", None)
    if not isinstance(default, str) or len(default) <= LONG_DEFAULT or not getattr(param, "show_default", True):
        return
    text = ", ".join(x.strip() for x in default.split(",")) if "," in default else default
    param.help = ((param.help or "").rstrip() + f" Default: {markdown_safe(text)}.").strip()
    param.show_default = False


def polish(cmd) -> None:
    """Clean help for a command (and a group's subcommands), once."""
    if getattr(cmd, "_protiso_polished", False):
        return
    cmd._protiso_polished = True
    cmd.help = markdown_safe(cmd.help)
    if getattr(cmd, "short_help", None):
        cmd.short_help = markdown_safe(cmd.short_help)
    for param in cmd.params:
        if getattr(param, "help", None):
            param.help = markdown_safe(param.help)
        _long_default_into_help(param)
        label = _label(param)
        param.display_type_rich = (lambda ctx, _label=label: _label)
    get_help_option = cmd.get_help_option

    def help_option(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: ""
        return option
    cmd.get_help_option = help_option
    if not hasattr(cmd, "commands"):
        run = cmd.invoke

        def invoke(ctx):
            _RUNNING[0] = _path(ctx)
            return run(ctx)
        cmd.invoke = invoke
    for sub in getattr(cmd, "commands", {}).values():
        polish(sub)


class ProtisoGroup(TyperGroup):
    """The top-level group: polished help, one-line usage errors, one error path."""

    def make_context(self, info_name, args, parent=None, **extra):
        polish(self)
        return super().make_context(info_name, args, parent=parent, **extra)

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            polish(cmd)
        return cmd

    def invoke(self, ctx):
        try:
            with notice_ctrl_c(), handle_errors():
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, _cx.ClickException):
            raise
        except Exception as exc:   # noqa: BLE001 - the last resort: a bug, in one line
            if os.environ.get("PROTISO_DEBUG"):
                raise
            if ctrl_c_seen() or isinstance(exc, RuntimeError) and str(exc).strip() == "Query interrupted":
                # Ctrl-C stopped a DuckDB query that Arrow was streaming (see ctrl_c_interrupts_queries)
                err_console.print(interrupted_message(), highlight=False, markup=False)
                raise typer.Exit(130)
            text = " ".join(str(exc).split())[:300]
            error(f"internal error: {type(exc).__name__}: {text}. This is a bug in protiso; "
                  "PROTISO_DEBUG=1 shows the traceback (please report it)")
            raise typer.Exit(3)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _cx.ClickException as exc:
            error(usage_line(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        except KeyboardInterrupt:   # Ctrl-C outside a command (while the arguments are parsed)
            err_console.print(interrupted_message(), highlight=False, markup=False)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)
