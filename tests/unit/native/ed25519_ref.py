"""A tiny pure-Python Edwards25519 (RFC 8032 section 6 style), for tests only: it crafts the points
and signatures no honest signer makes (small-order points, keys and R with a small-order
component, non-canonical encodings). Slow and not constant-time; never use it to sign for real."""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z

IDENTITY: Point = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def neg(p: Point) -> Point:
    return -p[0] % P, p[1], p[2], -p[3] % P


def mul(s: int, p: Point) -> Point:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = add(q, p)
        p = add(p, p)
        s >>= 1
    return q


def equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def recover_x(y: int, sign: int) -> int | None:
    """x with x's low bit = sign on the curve at y (y < p), or None when there is none."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def from_xy(x: int, y: int) -> Point:
    return x % P, y % P, 1, x * y % P


def encode(p: Point) -> bytes:
    zinv = pow(p[2], P - 2, P)
    x, y = p[0] * zinv % P, p[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(s: bytes) -> Point | None:
    """RFC 8032's strict decoding: None for a non-canonical y, for no x, or for x = 0 with the sign bit."""
    n = int.from_bytes(s, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    x = recover_x(y, sign)
    return None if x is None else from_xy(x, y)


BASE: Point = from_xy(recover_x(4 * pow(5, P - 2, P) % P, 0) or 0, 4 * pow(5, P - 2, P) % P)


def _torsion_generator() -> Point:
    """A point of order exactly 8: [L] of a point off the prime-order subgroup, found by search."""
    y = 2
    while True:
        x = recover_x(y, 0)
        if x is not None:
            t = mul(L, from_xy(x, y))
            if not equal(mul(4, t), IDENTITY):
                return t
        y += 1


T8: Point = _torsion_generator()
SMALL_ORDER: list[Point] = [mul(j, T8) for j in range(8)]  # the whole 8-torsion, identity first


def order_divides(n: int, p: Point) -> bool:
    return equal(mul(n, p), IDENTITY)


def hram(r: bytes, a: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + msg).digest(), "little") % L


def sign_raw(a: int, pub: bytes, r_point: Point, r: int, msg: bytes) -> bytes:
    """(R, S) with R given and S = r + k a mod L, k = SHA-512(R || A || M): RFC 8032's signing
    equation with a nonce point R chosen by the caller (honest when R = [r]B)."""
    big_r = encode(r_point)
    return big_r + ((r + hram(big_r, pub, msg) * a) % L).to_bytes(32, "little")
