"""Vector kernels of the numba SLIC backend, written as LLVM IR through numba intrinsics.

One call labels the rows of one seed cell, ``lanes`` pixels (8 or 16) per row, against the cell's 9
candidate centres. The code is explicit vector IR (``<16 x float>``, ``llvm.fma``, integer ``min``), so the
compiler does not have to discover the vectors itself; LLVM lowers it to AVX-512, AVX2 or SSE (NEON on
ARM) for the machine numba compiles for.

Distance of a pixel at ``(u, v)`` from the cell corner with colour offset ``f = colour - r`` (``r``:
the cell's own centre colour) to candidate ``c``::

    d_c = n + (K_c + wv_c v + v^2 / S^2) + wu_c u + w_c . f,     n = |f|^2 + u^2 / S^2

which is ``|f - (col_c - r)|^2 + |(u, v) - pos_c|^2 / S^2`` expanded (see ``slic_cells``). The nearest
candidate is the minimum of integer keys: the distance's bits with the lowest 4 replaced by the
candidate's slot (non-negative floats order like their bit patterns), so ties to 2^-19 relative go to
the lower slot, which is the lower centre index. A distance that rounds below zero (it is a sum of
squares, so only by float error) has a negative key and wins, as the true value ~0 should. The label
is computed from the slot.
"""

from __future__ import annotations

from types import SimpleNamespace

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
# Coefficients per candidate in the cell table: K, wu, wv, w0, w1, w2.
TABLE_STRIDE = 6


def _splat(builder: ir.IRBuilder, value: ir.Value, vty: ir.VectorType) -> ir.Value:
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vty.count), [0] * vty.count))


def _fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    name = f"llvm.fma.v{a.type.count}f32"
    fn = builder.module.globals.get(name)
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(a.type, [a.type] * 3), name=name)
    return builder.call(fn, [a, b, c])


def _nearest_key(builder, vf, vi, n, u, chans, v, vs, table, lanes):
    # Integer min over the 9 candidates' keys (distance bits | slot). The coefficients are loaded and
    # broadcast per row: hoisted out of the row loop, as 45 vectors in registers or in a scratch
    # table, they measured slower.
    def entry(i):
        return builder.load(builder.gep(table, [ir.Constant(_I64, i)]))

    low_mask = ir.Constant(vi, [-16] * lanes)
    best = None
    for c in range(9):
        k, wu, wv = (entry(TABLE_STRIDE * c + t) for t in range(3))
        row_const = builder.fadd(builder.fadd(k, builder.fmul(wv, v)), vs)
        d = builder.fadd(n, _splat(builder, row_const, vf))
        d = _fma(builder, _splat(builder, wu, vf), u, d)
        for ch, f in enumerate(chans):
            d = _fma(builder, _splat(builder, entry(TABLE_STRIDE * c + 3 + ch), vf), f, d)
        key = builder.or_(builder.and_(builder.bitcast(d, vi), low_mask), ir.Constant(vi, [c] * lanes))
        best = key if best is None else builder.select(builder.icmp_signed("<", key, best), key, best)
    return best


def _slot_labels(builder, vi, key, base, nx, lanes):
    # slot s = 3 * row + column; s // 3 as (11 s) >> 5 (exact for s < 9); label = base + row * nx + column.
    def const(value):
        return ir.Constant(vi, [value] * lanes)

    s = builder.and_(key, const(15))
    r = builder.ashr(builder.mul(s, const(11)), const(5))
    col = builder.sub(s, builder.mul(r, const(3)))
    return builder.add(builder.add(base, builder.mul(r, nx)), col)


def _row(builder, cell, at, v):
    # One row of the cell: load the features, the shared term n, the keys, the labels.
    n = cell.uu
    chans = []
    for ch, ref in enumerate(cell.refs):
        off = builder.add(at, builder.mul(cell.plane, ir.Constant(_I64, ch)))
        x = builder.load(builder.bitcast(builder.gep(cell.feat, [off]), cell.vf.as_pointer()), align=4)
        f = builder.fsub(x, ref)
        n = _fma(builder, f, f, n)
        chans.append(f)
    vs = builder.fmul(builder.fmul(v, v), cell.s2)
    key = _nearest_key(builder, cell.vf, cell.vi, n, cell.u, chans, v, vs, cell.table, cell.lanes)
    labels = _slot_labels(builder, cell.vi, key, cell.base, cell.nx, cell.lanes)
    builder.store(labels, builder.bitcast(builder.gep(cell.lab, [at]), cell.vi.as_pointer()), align=4)


def _rows_kernel(lanes: int, nc: int):
    vf = ir.VectorType(_F32, lanes)
    vi = ir.VectorType(_I32, lanes)

    def codegen(context, builder, signature, args):
        feat, off, plane, fw, lab, rows, table, u0, r0, r1, r2, s2, base, nx = args

        def data(i, value):
            return context.make_array(signature.args[i])(context, builder, value).data

        u = builder.fadd(_splat(builder, u0, vf), ir.Constant(vf, [float(t) for t in range(lanes)]))
        uu = builder.fmul(builder.fmul(u, u), _splat(builder, s2, vf))
        cell = SimpleNamespace(
            vf=vf, vi=vi, lanes=lanes, plane=plane, u=u, uu=uu, s2=s2,
            feat=data(0, feat), lab=data(4, lab), table=data(6, table),
            refs=[_splat(builder, r, vf) for r in (r0, r1, r2)[:nc]],
            base=_splat(builder, base, vi), nx=_splat(builder, nx, vi),
        )  # fmt: skip
        with cgutils.for_range(builder, rows) as loop:
            at = builder.add(off, builder.mul(loop.index, fw))
            _row(builder, cell, at, builder.sitofp(loop.index, _F32))
        return context.get_dummy_value()

    return codegen


def _make(lanes: int, nc: int):
    @intrinsic
    def label_rows(typingctx, feat, off, plane, fw, lab, rows, table, u0, r0, r1, r2, s2, base, nx):
        """Label ``lanes`` pixels in each of ``rows`` rows of one cell (see the module docstring).

        Args (numba types): feat float32[::1] flat features, off int64 element of the first pixel
        (channel 0, first row), plane int64 channel stride, fw int64 row stride (features and
        labels), lab int32[::1] flat labels (same layout), rows int64, table float32[::1] the cell's
        9 x TABLE_STRIDE coefficients, u0 float32 column of the first pixel from the cell corner,
        r0..r2 float32 the reference colour, s2 float32 1/S^2, base int32 label of slot 0, nx int32
        seeds per row. The first row is the cell's top row (v = 0).
        """
        sig = types.void(feat, off, plane, fw, lab, rows, table, u0, r0, r1, r2, s2, base, nx)
        return sig, _rows_kernel(lanes, nc)

    return label_rows


label_rows16_rgb = _make(16, 3)
label_rows8_rgb = _make(8, 3)
label_rows16_grey = _make(16, 1)
label_rows8_grey = _make(8, 1)


@intrinsic
def run_ends16(typingctx, lab, off):
    """Bit t (t < 16) set where ``lab[off + t] != lab[off + t + 1]``: the run ends among 16 labels.

    Args (numba types): lab int32[::1] flat labels, off int64 element of the first label. Reads 17
    labels.
    """
    sig = types.uint64(lab, off)

    def codegen(context, builder, signature, args):
        vi = ir.VectorType(_I32, 16)
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        here = builder.load(builder.bitcast(builder.gep(data, [args[1]]), vi.as_pointer()), align=4)
        nxt = builder.add(args[1], ir.Constant(_I64, 1))
        after = builder.load(builder.bitcast(builder.gep(data, [nxt]), vi.as_pointer()), align=4)
        bits = builder.bitcast(builder.icmp_signed("!=", here, after), ir.IntType(16))
        return builder.zext(bits, _I64)

    return sig, codegen


@intrinsic
def trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64 (``llvm.cttz``)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        name = "llvm.cttz.i64"
        fn = builder.module.globals.get(name)
        if fn is None:
            fn = ir.Function(builder.module, ir.FunctionType(_I64, [_I64, ir.IntType(1)]), name=name)
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return sig, codegen
