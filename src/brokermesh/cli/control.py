"""``brokermesh control``: show and change the trading controls through the control plane.

Every action calls the control-plane service over gRPC and prints its answer
as JSON on stdout; a failed call prints ``{"error": CODE, "message": ...}`` on
stderr and exits 1. Changes name the operator making them and a reason, both
of which land in the audit trail (``brokermesh control history``). Locally the
operator name is self-declared: nothing authenticates the caller. In the mesh
the control plane also records the caller's mTLS identity.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

#: Where ``brokermesh up`` runs the control plane (its manifest's port).
DEFAULT_ADDRESS = "127.0.0.1:50070"

#: CLI spelling of each degradation mode -> the enum value's name in the contract.
MODES = {
    "normal": "DEGRADATION_MODE_NORMAL",
    "ai-degraded": "DEGRADATION_MODE_AI_DEGRADED",
    "reduced": "DEGRADATION_MODE_REDUCED",
    "emergency": "DEGRADATION_MODE_EMERGENCY",
}

Action = Callable[[Any, argparse.Namespace], Any]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``control`` and its actions to the ``brokermesh`` command."""
    parser = subparsers.add_parser(
        "control",
        help="show or change trading controls (kill switch, degradation mode)",
        description=__doc__,
    )
    _connection_arguments(parser, defaults=True)
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)

    _action(actions, "show", "print the current trading controls", _show)
    halt = _action(actions, "halt", "halt all trading: no new order reaches a venue", _halt)
    _change_arguments(halt)
    resume = _action(actions, "resume", "resume trading after a halt", _resume)
    _change_arguments(resume)
    mode = _action(actions, "mode", "move the platform to another degradation mode", _mode)
    mode.add_argument("mode", choices=tuple(MODES), help="the degradation mode to enter")
    _change_arguments(mode)
    history = _action(actions, "history", "list recent control changes, newest first", _history)
    history.add_argument(
        "--limit", type=int, default=20, help="how many changes to list, at most 1000 (default 20)"
    )


def _action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    action: Action,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    # Accept --address and --timeout after the action too, as people type them.
    _connection_arguments(parser, defaults=False)
    parser.set_defaults(func=_handler(action))
    return parser


def _connection_arguments(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--address`` and ``--timeout``; only the ``control`` parser sets their defaults,
    so an action parser never overwrites a value given before the action."""
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS if defaults else argparse.SUPPRESS,
        help=f"control-plane gRPC address (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0 if defaults else argparse.SUPPRESS,
        help="seconds to wait for the control plane (default 5)",
    )


def _change_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why, for the audit trail")
    parser.add_argument(
        "--operator",
        required=True,
        metavar="OPS-ID",
        help="id of the operator making the change (recorded as given: self-declared locally)",
    )


def _handler(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap ``action`` in a channel, JSON output and an exit code."""

    def run(args: argparse.Namespace) -> int:
        # Imported here so that `brokermesh --help` does not load gRPC.
        import grpc
        from google.protobuf.json_format import MessageToDict

        from brokermesh.control.v1 import control_pb2_grpc

        with grpc.insecure_channel(args.address) as channel:
            stub = control_pb2_grpc.ControlPlaneServiceStub(channel)
            try:
                response = action(stub, args)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                _print_json({"error": code.name, "message": details}, sys.stderr)
                return 1
        _print_json(
            MessageToDict(
                response,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            ),
            sys.stdout,
        )
        return 0

    return run


def _print_json(value: Any, stream: Any) -> None:
    stream.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _operator(args: argparse.Namespace) -> Any:
    from brokermesh.common.v1 import common_pb2

    return common_pb2.Actor(type=common_pb2.ACTOR_TYPE_OPERATOR, id=args.operator)


def _show(stub: Any, args: argparse.Namespace) -> Any:
    from brokermesh.control.v1 import control_pb2

    return stub.GetTradingControls(control_pb2.GetTradingControlsRequest(), timeout=args.timeout)


def _set_kill_switch(stub: Any, args: argparse.Namespace, *, halted: bool) -> Any:
    from brokermesh.control.v1 import control_pb2

    request = control_pb2.SetKillSwitchRequest(
        trading_halted=halted, reason=args.reason, actor=_operator(args)
    )
    return stub.SetKillSwitch(request, timeout=args.timeout)


def _halt(stub: Any, args: argparse.Namespace) -> Any:
    return _set_kill_switch(stub, args, halted=True)


def _resume(stub: Any, args: argparse.Namespace) -> Any:
    return _set_kill_switch(stub, args, halted=False)


def _mode(stub: Any, args: argparse.Namespace) -> Any:
    from brokermesh.control.v1 import control_pb2

    request = control_pb2.SetDegradationModeRequest(
        mode=MODES[args.mode],
        reason=args.reason,
        actor=_operator(args),
    )
    return stub.SetDegradationMode(request, timeout=args.timeout)


def _history(stub: Any, args: argparse.Namespace) -> Any:
    from brokermesh.control.v1 import control_pb2

    request = control_pb2.ListControlChangesRequest(limit=args.limit)
    return stub.ListControlChanges(request, timeout=args.timeout)
