"""Pure FIX 4.4 codecs for orders (35=D), order status requests (35=H) and execution reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from typing import TypeVar

import quickfix

BEGIN_STRING = "FIX.4.4"
MSG_TYPE_NEW_ORDER_SINGLE = "D"
MSG_TYPE_EXECUTION_REPORT = "8"
MSG_TYPE_ORDER_STATUS_REQUEST = "H"
#: OrdRejReason (103) a venue gives for a ClOrdID it does not know.
ORD_REJ_REASON_UNKNOWN_ORDER = 5
_HANDL_INST_AUTOMATED = "1"
_TIMESTAMP_FORMAT = "%Y%m%d-%H:%M:%S"
_E = TypeVar("_E", bound=StrEnum)


class Tag(IntEnum):
    """The FIX 4.4 tags these codecs read and write."""

    ACCOUNT = 1
    AVG_PX = 6
    BEGIN_STRING = 8
    CL_ORD_ID = 11
    CUM_QTY = 14
    EXEC_ID = 17
    HANDL_INST = 21
    LAST_PX = 31
    LAST_QTY = 32
    MSG_TYPE = 35
    ORDER_ID = 37
    ORDER_QTY = 38
    ORD_STATUS = 39
    ORD_TYPE = 40
    PRICE = 44
    SIDE = 54
    SYMBOL = 55
    TEXT = 58
    TIME_IN_FORCE = 59
    TRANSACT_TIME = 60
    ORD_REJ_REASON = 103
    EXEC_TYPE = 150
    LEAVES_QTY = 151

    @property
    def fix_name(self) -> str:
        """The tag's name in the FIX specification, e.g. ``ClOrdID``."""
        return _FIX_NAMES[self]

    def __str__(self) -> str:
        return f"{self.fix_name}({self.value})"


_FIX_NAMES = {
    Tag.ACCOUNT: "Account",
    Tag.AVG_PX: "AvgPx",
    Tag.BEGIN_STRING: "BeginString",
    Tag.CL_ORD_ID: "ClOrdID",
    Tag.CUM_QTY: "CumQty",
    Tag.EXEC_ID: "ExecID",
    Tag.HANDL_INST: "HandlInst",
    Tag.LAST_PX: "LastPx",
    Tag.LAST_QTY: "LastQty",
    Tag.MSG_TYPE: "MsgType",
    Tag.ORDER_ID: "OrderID",
    Tag.ORDER_QTY: "OrderQty",
    Tag.ORD_STATUS: "OrdStatus",
    Tag.ORD_TYPE: "OrdType",
    Tag.PRICE: "Price",
    Tag.SIDE: "Side",
    Tag.SYMBOL: "Symbol",
    Tag.TEXT: "Text",
    Tag.TIME_IN_FORCE: "TimeInForce",
    Tag.TRANSACT_TIME: "TransactTime",
    Tag.ORD_REJ_REASON: "OrdRejReason",
    Tag.EXEC_TYPE: "ExecType",
    Tag.LEAVES_QTY: "LeavesQty",
}


class FixError(Exception):
    """Base class of every error raised by ``brokermesh.mesh.fix``."""


class FixMessageError(FixError, ValueError):
    """A FIX message lacks a field or carries a value these codecs cannot accept."""

    def __init__(self, tag: Tag, problem: str) -> None:
        super().__init__(f"{problem} {tag}")
        self.tag = tag
        self.tag_name = tag.fix_name
        self.problem = problem


class Side(StrEnum):
    """Side (54); the member values are the wire values."""

    BUY = "1"
    SELL = "2"


class OrderType(StrEnum):
    """OrdType (40); the member values are the wire values."""

    MARKET = "1"
    LIMIT = "2"


class TimeInForce(StrEnum):
    """TimeInForce (59); the member values are the wire values."""

    DAY = "0"
    GTC = "1"
    IOC = "3"


class OrdStatus(StrEnum):
    """OrdStatus (39); the member values are the wire values."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    REJECTED = "8"


class ExecType(StrEnum):
    """What an execution report announces; FIX 4.4 sends both fill kinds as ExecType F (Trade).

    Partial and complete fills share the wire value ``F``; OrdStatus (39) tells them apart, so
    the member values here are names and the wire values live in ``_EXEC_TYPE_WIRE``.
    ``ORDER_STATUS`` (ExecType I) answers an OrderStatusRequest; its OrdStatus is the news.
    """

    NEW = "NEW"
    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    ORDER_STATUS = "ORDER_STATUS"

    @property
    def is_trade(self) -> bool:
        """Whether the report carries a fill (ExecType F)."""
        return self in (ExecType.PARTIAL_FILL, ExecType.FILL)


_EXEC_TYPE_WIRE = {
    ExecType.NEW: "0",
    ExecType.PARTIAL_FILL: "F",
    ExecType.FILL: "F",
    ExecType.CANCELED: "4",
    ExecType.REJECTED: "8",
    ExecType.ORDER_STATUS: "I",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    """A NewOrderSingle: one order a broker sends to a venue."""

    cl_ord_id: str
    account: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: TimeInForce
    transact_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusQuery:
    """An OrderStatusRequest: a broker asking a venue what became of one of its orders."""

    cl_ord_id: str
    symbol: str
    side: Side


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """An ExecutionReport: a venue's account of what happened to one order."""

    cl_ord_id: str
    venue_order_id: str
    exec_id: str
    exec_type: ExecType
    order_status: OrdStatus
    symbol: str
    side: Side
    last_qty: int
    last_price: Decimal
    cum_qty: int
    leaves_qty: int
    avg_price: Decimal
    text: str
    transact_time: datetime
    #: OrdRejReason (103) of a rejection, when the venue gave one.
    ord_rej_reason: int | None = None


def new_order_single(order: NewOrder) -> quickfix.Message:
    """Build the FIX 4.4 NewOrderSingle for ``order``; a limit order must carry its price."""
    message = _message(MSG_TYPE_NEW_ORDER_SINGLE)
    _set(message, Tag.CL_ORD_ID, order.cl_ord_id)
    _set(message, Tag.ACCOUNT, order.account)
    _set(message, Tag.HANDL_INST, _HANDL_INST_AUTOMATED)
    _set(message, Tag.SYMBOL, order.symbol)
    _set(message, Tag.SIDE, order.side.value)
    _set(message, Tag.TRANSACT_TIME, format_timestamp(order.transact_time))
    _set(message, Tag.ORDER_QTY, format_quantity(order.quantity))
    _set(message, Tag.ORD_TYPE, order.order_type.value)
    if order.order_type is OrderType.LIMIT:
        if order.limit_price is None:
            raise FixMessageError(Tag.PRICE, "a limit order needs")
        _set(message, Tag.PRICE, format_price(order.limit_price))
    _set(message, Tag.TIME_IN_FORCE, order.time_in_force.value)
    return message


def parse_new_order_single(message: quickfix.Message) -> NewOrder:
    """Read a NewOrderSingle; raises FixMessageError naming the first missing or invalid tag."""
    _expect_msg_type(message, MSG_TYPE_NEW_ORDER_SINGLE)
    order_type = _enum(OrderType, message, Tag.ORD_TYPE)
    limit_price = None
    if order_type is OrderType.LIMIT:
        limit_price = _price(message, Tag.PRICE, positive=True)
    time_in_force = TimeInForce.DAY
    if _raw(message, Tag.TIME_IN_FORCE) is not None:
        time_in_force = _enum(TimeInForce, message, Tag.TIME_IN_FORCE)
    return NewOrder(
        cl_ord_id=_text(message, Tag.CL_ORD_ID),
        account=_text(message, Tag.ACCOUNT),
        symbol=_text(message, Tag.SYMBOL),
        side=_enum(Side, message, Tag.SIDE),
        quantity=_quantity(message, Tag.ORDER_QTY, positive=True),
        order_type=order_type,
        limit_price=limit_price,
        time_in_force=time_in_force,
        transact_time=_timestamp(message, Tag.TRANSACT_TIME),
    )


def order_status_request(query: OrderStatusQuery) -> quickfix.Message:
    """Build the FIX 4.4 OrderStatusRequest for ``query``."""
    message = _message(MSG_TYPE_ORDER_STATUS_REQUEST)
    _set(message, Tag.CL_ORD_ID, query.cl_ord_id)
    _set(message, Tag.SYMBOL, query.symbol)
    _set(message, Tag.SIDE, query.side.value)
    return message


def parse_order_status_request(message: quickfix.Message) -> OrderStatusQuery:
    """Read an OrderStatusRequest; raises FixMessageError naming the first bad tag."""
    _expect_msg_type(message, MSG_TYPE_ORDER_STATUS_REQUEST)
    return OrderStatusQuery(
        cl_ord_id=_text(message, Tag.CL_ORD_ID),
        symbol=_text(message, Tag.SYMBOL),
        side=_enum(Side, message, Tag.SIDE),
    )


def execution_report(execution: Execution) -> quickfix.Message:
    """Build the FIX 4.4 ExecutionReport for ``execution``."""
    _check_fill_status(execution.exec_type, execution.order_status)
    message = _message(MSG_TYPE_EXECUTION_REPORT)
    _set(message, Tag.ORDER_ID, execution.venue_order_id)
    _set(message, Tag.CL_ORD_ID, execution.cl_ord_id)
    _set(message, Tag.EXEC_ID, execution.exec_id)
    _set(message, Tag.EXEC_TYPE, _EXEC_TYPE_WIRE[execution.exec_type])
    _set(message, Tag.ORD_STATUS, execution.order_status.value)
    _set(message, Tag.SYMBOL, execution.symbol)
    _set(message, Tag.SIDE, execution.side.value)
    _set(message, Tag.LAST_QTY, format_quantity(execution.last_qty))
    _set(message, Tag.LAST_PX, format_price(execution.last_price))
    _set(message, Tag.LEAVES_QTY, format_quantity(execution.leaves_qty))
    _set(message, Tag.CUM_QTY, format_quantity(execution.cum_qty))
    _set(message, Tag.AVG_PX, format_price(execution.avg_price))
    _set(message, Tag.TRANSACT_TIME, format_timestamp(execution.transact_time))
    if execution.text:
        _set(message, Tag.TEXT, execution.text)
    if execution.ord_rej_reason is not None:
        _set(message, Tag.ORD_REJ_REASON, str(execution.ord_rej_reason))
    return message


def parse_execution_report(message: quickfix.Message) -> Execution:
    """Read an ExecutionReport; LastQty and LastPx default to zero on reports without a fill."""
    _expect_msg_type(message, MSG_TYPE_EXECUTION_REPORT)
    order_status = _enum(OrdStatus, message, Tag.ORD_STATUS)
    exec_type = _exec_type(message, order_status)
    trade = exec_type.is_trade
    return Execution(
        cl_ord_id=_text(message, Tag.CL_ORD_ID),
        venue_order_id=_text(message, Tag.ORDER_ID),
        exec_id=_text(message, Tag.EXEC_ID),
        exec_type=exec_type,
        order_status=order_status,
        symbol=_text(message, Tag.SYMBOL),
        side=_enum(Side, message, Tag.SIDE),
        last_qty=_optional_quantity(message, Tag.LAST_QTY, required=trade),
        last_price=_optional_price(message, Tag.LAST_PX, required=trade),
        cum_qty=_quantity(message, Tag.CUM_QTY, positive=False),
        leaves_qty=_quantity(message, Tag.LEAVES_QTY, positive=False),
        avg_price=_price(message, Tag.AVG_PX, positive=False),
        text=_raw(message, Tag.TEXT) or "",
        transact_time=_timestamp(message, Tag.TRANSACT_TIME),
        ord_rej_reason=_optional_code(message, Tag.ORD_REJ_REASON),
    )


def order_reject(
    order_message: quickfix.Message,
    *,
    venue_order_id: str,
    exec_id: str,
    text: str,
    transact_time: datetime,
) -> quickfix.Message:
    """Build a rejecting ExecutionReport for an order too malformed to become a ``NewOrder``.

    ClOrdID, Symbol and Side are echoed exactly as received, whatever their validity.
    """
    message = _message(MSG_TYPE_EXECUTION_REPORT)
    _set(message, Tag.ORDER_ID, venue_order_id)
    for tag in (Tag.CL_ORD_ID, Tag.SYMBOL, Tag.SIDE):
        value = _raw(order_message, tag)
        if value:
            _set(message, tag, value)
    _set(message, Tag.EXEC_ID, exec_id)
    _set(message, Tag.EXEC_TYPE, _EXEC_TYPE_WIRE[ExecType.REJECTED])
    _set(message, Tag.ORD_STATUS, OrdStatus.REJECTED.value)
    for tag in (Tag.LAST_QTY, Tag.LEAVES_QTY, Tag.CUM_QTY):
        _set(message, tag, "0")
    for tag in (Tag.LAST_PX, Tag.AVG_PX):
        _set(message, tag, "0")
    _set(message, Tag.TRANSACT_TIME, format_timestamp(transact_time))
    _set(message, Tag.TEXT, text)
    return message


def msg_type(message: quickfix.Message) -> str:
    """The MsgType (35) of ``message``, or an empty string when the header lacks it."""
    header = message.getHeader()
    tag = int(Tag.MSG_TYPE)
    return header.getField(tag) if header.isSetField(tag) else ""


def format_price(value: Decimal) -> str:
    """Render a finite Decimal as a FIX Price without exponent, keeping its scale."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise FixMessageError(Tag.PRICE, f"prices must be finite Decimals, got {value!r} for")
    return format(value, "f")


def format_quantity(value: int) -> str:
    """Render an integer share quantity as a FIX Qty."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise FixMessageError(Tag.ORDER_QTY, f"quantities must be ints, got {value!r} for")
    return str(value)


def format_timestamp(value: datetime) -> str:
    """Render an aware datetime as a FIX UTCTimestamp with millisecond precision."""
    if value.tzinfo is None:
        raise FixMessageError(Tag.TRANSACT_TIME, "a timezone-aware datetime is needed for")
    utc = value.astimezone(UTC)
    return f"{utc.strftime(_TIMESTAMP_FORMAT)}.{utc.microsecond // 1000:03d}"


def parse_timestamp(raw: str) -> datetime:
    """Read a FIX UTCTimestamp with 0, 3, 6 or 9 fractional digits (nanoseconds are truncated)."""
    whole, _, fraction = raw.partition(".")
    if fraction and (not fraction.isdigit() or len(fraction) not in (3, 6, 9)):
        raise ValueError(f"bad fractional seconds in {raw!r}")
    parsed = datetime.strptime(whole, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(fraction[:6].ljust(6, "0")) if fraction else 0)


def _message(message_type: str) -> quickfix.Message:
    message = quickfix.Message()
    header = message.getHeader()
    header.setField(int(Tag.BEGIN_STRING), BEGIN_STRING)
    header.setField(int(Tag.MSG_TYPE), message_type)
    return message


def _set(message: quickfix.Message, tag: Tag, value: str) -> None:
    if not value:
        raise FixMessageError(tag, "an empty value cannot be sent in")
    message.setField(int(tag), value)


def _raw(message: quickfix.Message, tag: Tag) -> str | None:
    return message.getField(int(tag)) if message.isSetField(int(tag)) else None


def _text(message: quickfix.Message, tag: Tag) -> str:
    value = _raw(message, tag)
    if not value:
        raise FixMessageError(tag, "missing required tag")
    return value


def _expect_msg_type(message: quickfix.Message, expected: str) -> None:
    actual = msg_type(message)
    if actual != expected:
        raise FixMessageError(Tag.MSG_TYPE, f"expected {expected!r}, got {actual!r} in")


def _invalid(tag: Tag, raw: str) -> FixMessageError:
    return FixMessageError(tag, f"invalid value {raw!r} in")


def _enum(kind: type[_E], message: quickfix.Message, tag: Tag) -> _E:
    raw = _text(message, tag)
    try:
        return kind(raw)
    except ValueError:
        raise _invalid(tag, raw) from None


def _timestamp(message: quickfix.Message, tag: Tag) -> datetime:
    raw = _text(message, tag)
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise _invalid(tag, raw) from None


def _exec_type(message: quickfix.Message, order_status: OrdStatus) -> ExecType:
    raw = _text(message, Tag.EXEC_TYPE)
    if raw == "F":
        return ExecType.FILL if order_status is OrdStatus.FILLED else ExecType.PARTIAL_FILL
    for exec_type, wire in _EXEC_TYPE_WIRE.items():
        if wire == raw:
            return exec_type
    raise _invalid(Tag.EXEC_TYPE, raw)


def _check_fill_status(exec_type: ExecType, order_status: OrdStatus) -> None:
    filled = order_status is OrdStatus.FILLED
    if (exec_type is ExecType.FILL) != filled and exec_type.is_trade:
        problem = f"{exec_type.value} cannot carry OrdStatus {order_status.name} in"
        raise FixMessageError(Tag.ORD_STATUS, problem)


def _decimal(message: quickfix.Message, tag: Tag) -> Decimal:
    raw = _text(message, tag)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _invalid(tag, raw) from None
    if not value.is_finite():
        raise _invalid(tag, raw)
    return value


def _price(message: quickfix.Message, tag: Tag, *, positive: bool) -> Decimal:
    value = _decimal(message, tag)
    if value < 0 or (positive and value == 0):
        raise _invalid(tag, _text(message, tag))
    return value


def _quantity(message: quickfix.Message, tag: Tag, *, positive: bool) -> int:
    value = _decimal(message, tag)
    if value != value.to_integral_value() or value < 0 or (positive and value == 0):
        raise _invalid(tag, _text(message, tag))
    return int(value)


def _optional_quantity(message: quickfix.Message, tag: Tag, *, required: bool) -> int:
    if not required and _raw(message, tag) is None:
        return 0
    return _quantity(message, tag, positive=required)


def _optional_code(message: quickfix.Message, tag: Tag) -> int | None:
    raw = _raw(message, tag)
    if raw is None:
        return None
    if not raw.isdigit():
        raise _invalid(tag, raw)
    return int(raw)


def _optional_price(message: quickfix.Message, tag: Tag, *, required: bool) -> Decimal:
    if not required and _raw(message, tag) is None:
        return Decimal(0)
    return _price(message, tag, positive=required)
