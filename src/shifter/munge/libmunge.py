"""MUNGE credentials through libmunge (ctypes): no subprocess per credential.

The gateway decodes a credential on every request and the clients mint one per request, so
both go through the library directly. The socket path selects the munged instance (one per
platform on the gateway side).
"""

from __future__ import annotations

import ctypes

from shifter.errors import ShifterError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shifter.munge.values import DecodedCredential, MungeStatus

LIBRARY = "libmunge.so.2"

_OPT_SOCKET = 8  # MUNGE_OPT_SOCKET in munge.h
_OPT_TTL = 4  # MUNGE_OPT_TTL
# munge_err_t values the calls below test (all of them: MungeStatus in values.py).
_SUCCESS = 0
_SNAFU = 1
_NO_MEMORY = 5


def __getattr__(name: str) -> object:
    # MungeStatus and DecodedCredential live in values.py, which imports `enum` and
    # `collections` (~2.5 ms): a client that only encodes never needs them.
    if name in ("MungeStatus", "DecodedCredential"):
        from shifter.munge import values

        return getattr(values, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MungeError(ShifterError):
    """A credential could not be made or was refused; `status` says why."""

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        from shifter.munge.values import status_of

        super().__init__(message, hint=hint)
        self.status: MungeStatus = status_of(status)

    @property
    def is_credential_problem(self) -> bool:
        """True when the credential itself is bad (not the daemon or the socket)."""
        from shifter.munge.values import MungeStatus

        return self.status >= MungeStatus.BAD_CRED


class Munge:
    """One libmunge binding bound to one munged socket (None: the library's default)."""

    def __init__(self, socket_path: str | None = None) -> None:
        try:
            lib = ctypes.CDLL(LIBRARY, use_errno=True)
        except OSError as exc:
            raise MungeError(
                f"cannot load {LIBRARY}", _SNAFU,
                hint="install Debian's libmunge2 package",
            ) from exc
        self._lib = lib
        self._libc = ctypes.CDLL(None)
        self.socket_path = socket_path
        lib.munge_ctx_create.restype = ctypes.c_void_p
        lib.munge_ctx_destroy.argtypes = [ctypes.c_void_p]
        lib.munge_ctx_strerror.restype = ctypes.c_char_p
        lib.munge_ctx_strerror.argtypes = [ctypes.c_void_p]
        lib.munge_strerror.restype = ctypes.c_char_p
        lib.munge_encode.argtypes = [
            ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
        ]
        lib.munge_decode.argtypes = [
            ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
        ]
        self._libc.free.argtypes = [ctypes.c_void_p]

    def _context(self, ttl: int | None = None) -> int:
        ctx = self._lib.munge_ctx_create()
        if not ctx:
            raise MungeError("cannot create a munge context", _NO_MEMORY)
        # munge_ctx_set is variadic: the value's C type follows from the option.
        if self.socket_path is not None:
            status = self._lib.munge_ctx_set(
                ctypes.c_void_p(ctx), _OPT_SOCKET, ctypes.c_char_p(self.socket_path.encode())
            )
            self._check(status, ctx, "set the munge socket")
        if ttl is not None:
            status = self._lib.munge_ctx_set(ctypes.c_void_p(ctx), _OPT_TTL, ctypes.c_int(ttl))
            self._check(status, ctx, "set the credential lifetime")
        return ctx

    def _check(self, status: int, ctx: int, doing: str) -> None:
        if status == _SUCCESS:
            return
        from shifter.munge.values import MungeStatus, status_of

        detail = self._lib.munge_ctx_strerror(ctypes.c_void_p(ctx)) if ctx else None
        text = (detail or self._lib.munge_strerror(status) or b"unknown error").decode()
        code = status_of(status)
        self._lib.munge_ctx_destroy(ctypes.c_void_p(ctx))
        hint = None
        if code in (MungeStatus.SOCKET, MungeStatus.TIMEOUT):
            where = self.socket_path or "the default socket"
            hint = f"is munged running and reachable at {where}?"
        raise MungeError(f"cannot {doing}: {text}", code, hint=hint)

    def encode(self, payload: bytes = b"", *, ttl: int | None = None) -> str:
        """A credential for the calling process's uid and gid carrying `payload`."""
        ctx = self._context(ttl)
        cred = ctypes.c_char_p()
        status = self._lib.munge_encode(ctypes.byref(cred), ctx, payload, len(payload))
        self._check(status, ctx, "make a munge credential")
        try:
            return (cred.value or b"").decode("ascii")
        finally:
            self._libc.free(cred)
            self._lib.munge_ctx_destroy(ctypes.c_void_p(ctx))

    def decode(self, credential: str) -> DecodedCredential:
        """Check a credential (signature, expiry, replay) and return what it carries."""
        from shifter.munge.values import DecodedCredential

        ctx = self._context()
        buf = ctypes.c_void_p()
        length = ctypes.c_int()
        uid = ctypes.c_uint()
        gid = ctypes.c_uint()
        status = self._lib.munge_decode(
            credential.encode("ascii", errors="replace"), ctx, ctypes.byref(buf),
            ctypes.byref(length), ctypes.byref(uid), ctypes.byref(gid),
        )
        try:
            self._check(status, ctx, "verify the munge credential")
            payload = ctypes.string_at(buf, length.value) if buf.value else b""
        finally:
            if buf.value:
                self._libc.free(buf)
        self._lib.munge_ctx_destroy(ctypes.c_void_p(ctx))
        return DecodedCredential(payload=payload, uid=uid.value, gid=gid.value)
