"""A pickle reader that executes nothing: it walks the opcodes and builds a symbolic tree.

torch checkpoints describe their tensors in a pickle (data.pkl). Unpickling it would run
arbitrary code, so this reader never imports or calls anything: a GLOBAL becomes a `Global`
(two strings), REDUCE/NEWOBJ/INST/OBJ become a `Call` node, BUILD records the state on it,
a persistent id becomes a `PersId`. Dicts are `SDict`s (ordered key/value pairs, since keys may be
symbolic), lists are lists, tuples are tuples. Memory and time are bounded by the size of
the pickle (callers cap it); anything unexpected raises PickleError (a FormatError).
"""
from __future__ import annotations

import codecs
import struct
from typing import Any

from .errors import FormatError

MAX_PICKLE = 32 << 20  # callers refuse larger pickles (torch's take ~150 bytes per tensor)
MAX_OPS = 4_000_000  # ~30 opcodes per tensor: room for ~130k tensors, under ~300 MB of nodes
MAX_LINE = 1 << 16  # protocol-0 text arguments (decimal ints, module names, ...)
MAX_DIGITS = 4000  # decimal integers: int() is quadratic in the number of digits


class PickleError(FormatError):
    """The pickle is malformed or uses something this reader does not model."""


class Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __repr__(self) -> str:
        return f"Global({self.module}.{self.name})"


class PersId:
    __slots__ = ("pid",)

    def __init__(self, pid: Any):
        self.pid = pid


class Call:
    """func(*args), never performed; SETITEM(S)/APPEND(S)/BUILD on it are recorded.
    items/appends stay () until used: a pickle of empty objects costs little memory."""
    __slots__ = ("func", "args", "items", "appends", "state")

    def __init__(self, func: Any, args: Any):
        self.func, self.args = func, args
        self.items: list[tuple[Any, Any]] | tuple = ()
        self.appends: list[Any] | tuple = ()
        self.state: Any = None


class SDict:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]] | tuple = ()):
        self.items = items


_MARK = object()  # pushed by MARK (a separate metastack would work too)


_STRUCTS = {f: struct.Struct(f) for f in ("<i", "<H", "<I", "<Q", ">d")}


class _Reader:
    def __init__(self, data: bytes | memoryview, pos: int):
        self.b = data if isinstance(data, bytes) else bytes(data)  # bytes.find for text lines
        self.d, self.p = memoryview(self.b), pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.p + n > len(self.d):
            raise PickleError("pickle truncated")
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def byte(self) -> int:
        if self.p >= len(self.b):
            raise PickleError("pickle truncated")
        self.p += 1
        return self.b[self.p - 1]

    def unpack(self, fmt: str) -> Any:
        s = _STRUCTS[fmt]
        return s.unpack(self.take(s.size))[0]

    def line(self) -> str:
        end = self.b.find(b"\n", self.p, self.p + MAX_LINE)
        if end < 0:
            raise PickleError("pickle text argument too long or truncated")
        s = self.b[self.p:end]
        self.p = end + 1
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            return s.decode("latin-1")


def _text_int(s: str) -> Any:
    s = s.rstrip("L")
    if s in ("00", "01"):
        return s == "01"
    if len(s) > MAX_DIGITS:
        raise PickleError("decimal integer too long")
    try:
        return int(s)
    except ValueError:
        raise PickleError("bad decimal integer") from None


def _text_str(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        try:
            return codecs.escape_decode(s[1:-1].encode("latin-1"))[0].decode("latin-1")
        except (ValueError, UnicodeDecodeError):
            pass
    raise PickleError("bad STRING argument")


def _utf8(b: memoryview) -> str:
    try:
        return str(b, "utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise PickleError("bad UTF-8 string") from None


def scan(data: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Symbolically read the pickle starting at data[pos:]; returns (root object, end offset)."""
    if len(data) - pos > MAX_PICKLE:
        raise PickleError("pickle too large")
    r = _Reader(data, pos)
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop() -> Any:
        if not stack or stack[-1] is _MARK:
            raise PickleError("pickle stack underflow")
        return stack.pop()

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise PickleError("pickle MARK missing")

    def top() -> Any:
        if not stack or stack[-1] is _MARK:
            raise PickleError("pickle stack underflow")
        return stack[-1]

    def set_items(target: Any, flat: list[Any]) -> None:
        if len(flat) % 2:
            raise PickleError("odd number of dict items")
        pairs = list(zip(flat[::2], flat[1::2]))
        if not isinstance(target, (SDict, Call)):
            raise PickleError("SETITEM(S) on a non-dict")
        if target.items:
            target.items.extend(pairs)  # a list once anything was set
        else:
            target.items = pairs

    def append(target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target += items
        elif isinstance(target, Call):
            if target.appends:
                target.appends.extend(items)
            else:
                target.appends = items
        else:
            raise PickleError("APPEND(S) on a non-list")

    def get(i: int) -> Any:
        if i not in memo:
            raise PickleError("memo key missing")
        return memo[i]

    for _ in range(MAX_OPS):  # every opcode makes at most one new node: bounds memory
        op = r.byte()
        # the opcodes torch pickles are made of come first (this loop is the hot path)
        if op in (0x70, 0x71, 0x72):  # PUT, BINPUT, LONG_BINPUT
            i = _text_int(r.line()) if op == 0x70 else r.byte() if op == 0x71 else r.unpack("<I")
            memo[i] = top()
        elif op in (0x67, 0x68, 0x6A):  # GET, BINGET, LONG_BINGET
            i = _text_int(r.line()) if op == 0x67 else r.byte() if op == 0x68 else r.unpack("<I")
            stack.append(get(i))
        elif op == 0x28:  # MARK
            stack.append(_MARK)
        elif op == 0x58:  # BINUNICODE
            stack.append(_utf8(r.take(r.unpack("<I"))))
        elif op == 0x4B:  # BININT1
            stack.append(r.byte())
        elif op == 0x74:  # TUPLE
            stack.append(tuple(pop_mark()))
        elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
            n = op - 0x84
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif op == 0x52:  # REDUCE
            args = pop()
            stack.append(Call(pop(), args))
        elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE
            stack.append(op == 0x88)
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x51:  # BINPERSID
            stack.append(PersId(pop()))
        elif op == 0x63:  # GLOBAL (text: module \n name \n)
            stack.append(Global(r.line(), r.line()))
        elif op == 0x4D:  # BININT2
            stack.append(r.unpack("<H"))
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op == 0x75:  # SETITEMS
            items = pop_mark()
            set_items(top(), items)
        elif op == 0x73:  # SETITEM
            v, k = pop(), pop()
            set_items(top(), [k, v])
        elif op == 0x7D:  # EMPTY_DICT
            stack.append(SDict())
        elif op == 0x4A:  # BININT
            stack.append(r.unpack("<i"))
        elif op == 0x80:  # PROTO
            if r.byte() > 5:
                raise PickleError("unsupported pickle protocol")
        elif op == 0x95:  # FRAME: a length hint, no structure
            r.take(8)
        elif op == 0x2E:  # STOP
            if len(stack) != 1 or stack[0] is _MARK:
                raise PickleError("pickle stack not one object at STOP")
            return stack[0], r.p
        elif op == 0x30:  # POP
            if stack and stack[-1] is _MARK:
                stack.pop()
            else:
                pop()
        elif op == 0x31:  # POP_MARK
            pop_mark()
        elif op == 0x32:  # DUP
            stack.append(top())
        elif op in (0x49, 0x4C):  # INT, LONG (text)
            stack.append(_text_int(r.line()))
        elif op == 0x8A:  # LONG1
            stack.append(int.from_bytes(r.take(r.byte()), "little", signed=True))
        elif op == 0x8B:  # LONG4
            n = r.unpack("<i")
            if n > 1 << 16:
                raise PickleError("integer too long")
            stack.append(int.from_bytes(r.take(n), "little", signed=True))
        elif op == 0x47:  # BINFLOAT
            stack.append(r.unpack(">d"))
        elif op == 0x46:  # FLOAT (text)
            try:
                stack.append(float(r.line()))
            except ValueError:
                raise PickleError("bad FLOAT") from None
        elif op == 0x53:  # STRING (text, quoted)
            stack.append(_text_str(r.line()))
        elif op == 0x54:  # BINSTRING
            stack.append(str(r.take(r.unpack("<i")), "latin-1"))
        elif op == 0x55:  # SHORT_BINSTRING
            stack.append(str(r.take(r.byte()), "latin-1"))
        elif op == 0x56:  # UNICODE (raw-unicode-escape text)
            try:
                stack.append(r.line().encode("latin-1").decode("raw-unicode-escape"))
            except (UnicodeError, ValueError):
                raise PickleError("bad UNICODE") from None
        elif op == 0x8C:  # SHORT_BINUNICODE
            stack.append(_utf8(r.take(r.byte())))
        elif op == 0x8D:  # BINUNICODE8
            stack.append(_utf8(r.take(r.unpack("<Q"))))
        elif op == 0x42:  # BINBYTES
            stack.append(bytes(r.take(r.unpack("<I"))))
        elif op == 0x43:  # SHORT_BINBYTES
            stack.append(bytes(r.take(r.byte())))
        elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
            stack.append(bytes(r.take(r.unpack("<Q"))))
        elif op == 0x5D:  # EMPTY_LIST
            stack.append([])
        elif op == 0x6C:  # LIST
            stack.append(pop_mark())
        elif op == 0x61:  # APPEND
            v = pop()
            append(top(), [v])
        elif op == 0x65:  # APPENDS
            items = pop_mark()
            append(top(), items)
        elif op == 0x64:  # DICT
            d = SDict()
            set_items(d, pop_mark())
            stack.append(d)
        elif op == 0x8F:  # EMPTY_SET
            stack.append([])
        elif op == 0x90:  # ADDITEMS
            items = pop_mark()
            append(top(), items)
        elif op == 0x91:  # FROZENSET
            stack.append(tuple(pop_mark()))
        elif op == 0x93:  # STACK_GLOBAL
            name, module = pop(), pop()
            if not isinstance(module, str) or not isinstance(name, str):
                raise PickleError("STACK_GLOBAL needs two strings")
            stack.append(Global(module, name))
        elif op == 0x81:  # NEWOBJ
            args = pop()
            stack.append(Call(pop(), args))
        elif op == 0x92:  # NEWOBJ_EX
            kwargs, args = pop(), pop()
            stack.append(Call(pop(), (args, kwargs)))
        elif op == 0x69:  # INST (text module/name, args from MARK)
            g = Global(r.line(), r.line())
            stack.append(Call(g, tuple(pop_mark())))
        elif op == 0x6F:  # OBJ
            items = pop_mark()
            if not items:
                raise PickleError("OBJ without a class")
            stack.append(Call(items[0], tuple(items[1:])))
        elif op == 0x62:  # BUILD
            state = pop()
            obj = top()
            if not isinstance(obj, Call):
                obj = stack[-1] = Call(Global("", "BUILD"), (obj,))
            obj.state = state
        elif op == 0x50:  # PERSID (text)
            stack.append(PersId(r.line()))
        elif op == 0x94:  # MEMOIZE
            memo[len(memo)] = top()
        else:  # EXT1/2/4 (extension registry), out-of-band buffers, unknown bytes
            raise PickleError(f"unsupported pickle opcode 0x{op:02x}")
    raise PickleError("pickle has too many opcodes")
