#!/usr/bin/env python3
"""Generates the hand-made TFLite replay corpus for test_importer and the
fuzzer's seed corpus.

    python3 tests/data/broken_models/make_corpus.py

writes every case into tests/data/broken_models/ and tests/fuzz/seeds_tflite/
(both committed). The output is deterministic: rerunning it must leave git
clean.

File names say what the importer must answer:
    malformed_*.tflite    FPAY_MODEL_MALFORMED
    unsupported_*.tflite  FPAY_MODEL_UNSUPPORTED
    valid_*.tflite        FPAY_OK (valid_every_op holds one of each op the
                          importer maps, for attribute checks and as a seed)

The flatbuffers are written by the small writer below (no flatc, no
third-party code). It lays objects out front to back, parents before
children, so every uoffset is positive, and puts each vtable just before its
table. Schema: TFLite schema.fbs v3, field order as in docs/model-format.md.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "..", "..", "fuzz", "seeds_tflite")

# ----------------------------------------------------------- the writer

SIZES = {"u8": 1, "i8": 1, "bool": 1, "i32": 4, "u32": 4, "f32": 4,
         "u64": 8, "i64": 8, "off": 4}
FMT = {"u8": "<B", "i8": "<b", "bool": "<B", "i32": "<i", "u32": "<I",
       "f32": "<f", "u64": "<Q", "i64": "<q"}


class Table:
    """fields: {field_id: (kind, value)}; kind "off" takes a Table, Vec or
    Str. After writing, .pos/.vt/.field_pos tell where things went."""

    def __init__(self, fields):
        self.fields = {k: v for k, v in fields.items() if v is not None}


class Vec:
    def __init__(self, kind, items):
        self.kind, self.items = kind, list(items)


class Str:
    def __init__(self, s):
        self.s = s.encode() if isinstance(s, str) else s


def serialize(root):
    b = bytearray(b"\0\0\0\0TFL3")
    queue = [(0, root)]
    done = {}

    def align(n):
        while len(b) % n:
            b.append(0)

    def put(fmt, v):
        b.extend(struct.pack(fmt, v))

    def emit(obj):
        if isinstance(obj, Table):
            ids = sorted(obj.fields)
            layout, off = {}, 4
            for fid in ids:
                sz = SIZES[obj.fields[fid][0]]
                off = (off + sz - 1) // sz * sz
                layout[fid] = off
                off += sz
            tab_len = (off + 3) // 4 * 4
            nslots = (max(ids) + 1) if ids else 0
            align(2)
            obj.vt = len(b)
            put("<H", 4 + 2 * nslots)
            put("<H", tab_len)
            for fid in range(nslots):
                put("<H", layout.get(fid, 0))
            align(8)
            obj.pos = pos = len(b)
            b.extend(bytes(tab_len))
            struct.pack_into("<i", b, pos, pos - obj.vt)
            obj.field_pos = {}
            for fid in ids:
                kind, v = obj.fields[fid]
                fp = pos + layout[fid]
                obj.field_pos[fid] = fp
                if kind == "off":
                    queue.append((fp, v))
                else:
                    struct.pack_into(FMT[kind], b, fp, v)
            return pos
        if isinstance(obj, Vec):
            sz = SIZES[obj.kind]
            align(4)
            if sz == 8 and len(b) % 8 == 0:
                b.extend(bytes(4))  # elements 8-aligned
            obj.pos = pos = len(b)
            put("<I", len(obj.items))
            for it in obj.items:
                if obj.kind == "off":
                    queue.append((len(b), it))
                    put("<I", 0)
                else:
                    put(FMT[obj.kind], it)
            return pos
        if isinstance(obj, Str):
            align(4)
            obj.pos = pos = len(b)
            put("<I", len(obj.s))
            b.extend(obj.s + b"\0")
            return pos
        raise TypeError(obj)

    while queue:
        slot, obj = queue.pop(0)
        if id(obj) not in done:
            done[id(obj)] = emit(obj)
        struct.pack_into("<I", b, slot, done[id(obj)] - slot)
    return b


# ------------------------------------------------------ the model spec

F32, F16, I32, U8, I64, STRING, BOOL, INT8 = 0, 1, 2, 3, 4, 5, 6, 9
PACK = {F32: "<f", F16: "<e", I32: "<i", U8: "<B", BOOL: "<B", INT8: "<b",
        I64: "<q"}


class Model:
    def __init__(self):
        self.tensors, self.buffers, self.ops, self.codes = [], [Table({})], [], []
        self.inputs, self.outputs = [], []
        self.version, self.n_subgraphs = 3, 1

    def tensor(self, name, shape, dtype=F32, data=None, quant=None, raw=None):
        buf = 0
        if data is not None or raw is not None:
            if raw is None:
                raw = b"".join(struct.pack(PACK[dtype], v) for v in data)
            self.buffers.append(Table({0: ("off", Vec("u8", raw))}))
            buf = len(self.buffers) - 1
        self.tensors.append({"name": name, "shape": shape, "type": dtype,
                             "buffer": buf, "quant": quant})
        return len(self.tensors) - 1

    def op(self, code, ins, outs, opt_type=0, opts=None, custom=None):
        key = (code, custom)
        if key not in self.codes:
            self.codes.append(key)
        self.ops.append({"opcode": self.codes.index(key), "ins": ins,
                         "outs": outs, "opt_type": opt_type, "opts": opts})
        return len(self.ops) - 1

    def build(self):
        self.t_tables = []
        for t in self.tensors:
            f = {1: ("i8", t["type"]), 2: ("u32", t["buffer"]),
                 3: ("off", Str(t["name"]))}
            if t["shape"] is not None:
                f[0] = ("off", Vec("i32", t["shape"]))
            if t["quant"] is not None:
                f[4] = ("off", t["quant"])
            self.t_tables.append(Table(f))
        self.o_tables = []
        for o in self.ops:
            f = {0: ("u32", o["opcode"]), 1: ("off", Vec("i32", o["ins"])),
                 2: ("off", Vec("i32", o["outs"])), 3: ("u8", o["opt_type"])}
            if o["opts"] is not None:
                f[4] = ("off", Table(o["opts"]))
            self.o_tables.append(Table(f))
        codes = []
        for code, custom in self.codes:
            f = {0: ("i8", min(code, 127)), 2: ("i32", 1), 3: ("i32", code)}
            if custom is not None:
                f[1] = ("off", Str(custom))
            codes.append(Table(f))
        self.sg = Table({0: ("off", Vec("off", self.t_tables)),
                         1: ("off", Vec("i32", self.inputs)),
                         2: ("off", Vec("i32", self.outputs)),
                         3: ("off", Vec("off", self.o_tables)),
                         4: ("off", Str("main"))})
        self.sg_vec = Vec("off", [self.sg] * self.n_subgraphs)
        self.root = Table({0: ("u32", self.version),
                           1: ("off", Vec("off", codes)),
                           2: ("off", self.sg_vec),
                           3: ("off", Str("facepay corpus")),
                           4: ("off", Vec("off", self.buffers))})
        return serialize(self.root)


# BuiltinOperator / BuiltinOptions values used below.
ADD, AVG_POOL, CONCAT, CONV, DWCONV, DEQUANT, FC, L2 = 0, 1, 2, 3, 4, 6, 9, 11
MAX_POOL, MUL, RELU, RELU6, RESHAPE, SOFTMAX, TANH, CUSTOM = 17, 18, 19, 21, 22, 25, 28, 32
SUB, DIV, SLICE, EXP, CAST, PRELU, LESS, NEG, GE = 41, 42, 45, 47, 53, 54, 58, 59, 62
SUM, RMAX, LEAKY, ABS = 74, 82, 98, 101
O_CONV, O_DW, O_POOL, O_FC, O_SOFTMAX, O_CONCAT, O_ADD, O_L2 = 1, 2, 5, 8, 9, 10, 11, 12
O_RESHAPE, O_MUL, O_REDUCER, O_SUB, O_DIV, O_SLICE, O_CAST, O_LEAKY = 17, 21, 27, 28, 29, 32, 37, 75


def conv_opts(pad=1, sw=1, sh=1, act=0):
    return {0: ("i8", pad), 1: ("i32", sw), 2: ("i32", sh), 3: ("i8", act)}


def tiny(**kw):
    """input [1,4,4,2] -> CONV_2D 1x1 -> RELU -> output: about 600 bytes."""
    m = Model()
    x = m.tensor("x", [1, 4, 4, 2])
    w = m.tensor("w", [2, 1, 1, 2], data=[0.5, -0.5, 0.25, 1.0])
    bias = m.tensor("b", [2], data=[0.0, 1.0])
    c = m.tensor("c", [1, 4, 4, 2])
    y = m.tensor("y", [1, 4, 4, 2])
    m.op(CONV, [x, w, bias], [c], O_CONV, conv_opts(**kw))
    m.op(RELU, [c], [y])
    m.inputs, m.outputs = [x], [y]
    return m


def every_op():
    """One of each op the importer maps, with options that are easy to
    check (strides 2, RELU6, alpha 0.125...)."""
    m = Model()
    T = m.tensor
    x = T("x", [1, 4, 4, 2])
    w0 = T("w0", [2, 3, 3, 2], data=[0.01 * i for i in range(36)])
    b0 = T("b0", [2], data=[0.1, -0.1])
    c0 = T("c0", [1, 2, 2, 2])
    m.op(CONV, [x, w0, b0], [c0], O_CONV, conv_opts(pad=0, sw=2, sh=2, act=3))
    dww = T("dw_w", [1, 3, 3, 2], data=[0.1] * 18)
    d0 = T("d0", [1, 2, 2, 2])
    m.op(DWCONV, [c0, dww], [d0], O_DW,
         {0: ("i8", 0), 1: ("i32", 1), 2: ("i32", 1), 3: ("i32", 1),
          4: ("i8", 1), 5: ("i32", 2), 6: ("i32", 2)})
    p0 = T("p0", [1, 1, 1, 2])
    m.op(MAX_POOL, [d0], [p0], O_POOL,
         {0: ("i8", 1), 1: ("i32", 2), 2: ("i32", 2), 3: ("i32", 2),
          4: ("i32", 2)})
    p1 = T("p1", [1, 1, 1, 2])
    m.op(AVG_POOL, [p0], [p1], O_POOL,
         {0: ("i8", 0), 1: ("i32", 1), 2: ("i32", 1), 3: ("i32", 3),
          4: ("i32", 2), 5: ("i8", 1)})
    a0, n0, r0, r6 = (T(n, [1, 1, 1, 2]) for n in ("a0", "n0", "r0", "r6"))
    m.op(ABS, [p1], [a0])
    m.op(NEG, [a0], [n0])
    m.op(RELU, [n0], [r0])
    m.op(RELU6, [r0], [r6])
    l0 = T("l0", [1, 1, 1, 2])
    m.op(LEAKY, [r6], [l0], O_LEAKY, {0: ("f32", 0.125)})
    slope = T("slope", [2], data=[0.25, -0.5])
    pr = T("pr", [1, 1, 1, 2])
    m.op(PRELU, [l0, slope], [pr])
    e0 = T("e0", [1, 1, 1, 2])
    m.op(EXP, [pr], [e0])
    s = [T("s%d" % i, [1, 1, 1, 2]) for i in range(4)]
    m.op(ADD, [e0, pr], [s[0]], O_ADD, {0: ("i8", 1)})
    m.op(SUB, [s[0], e0], [s[1]], O_SUB, {0: ("i8", 0)})
    m.op(MUL, [s[1], s[0]], [s[2]], O_MUL, {0: ("i8", 3)})
    m.op(DIV, [s[2], e0], [s[3]], O_DIV, {0: ("i8", 2)})
    ax = T("axis_last", [1], I32, data=[-1])
    m0 = T("m0", [1, 1, 1, 1])
    m.op(RMAX, [s[3], ax], [m0], O_REDUCER, {0: ("bool", 1)})
    ax2 = T("axis_scalar", [], I32, data=[1])
    m1 = T("m1", [1, 1, 2])
    m.op(SUM, [s[3], ax2], [m1], O_REDUCER, {0: ("bool", 0)})
    shp = T("shape", [2], I32, data=[1, 2])
    rs = T("rs", [1, 2])
    m.op(RESHAPE, [s[3], shp], [rs], O_RESHAPE, {0: ("off", Vec("i32", [1, 2]))})
    rs2 = T("rs2", [2, 1])
    m.op(RESHAPE, [m1], [rs2], O_RESHAPE, {0: ("off", Vec("i32", [-1, 1]))})
    beg = T("begin", [2], I32, data=[0, 0])
    end = T("end", [2], I32, data=[1, 2])
    std = T("strides", [2], I32, data=[1, 1])
    sl = T("sl", [1, 2])
    m.op(SLICE, [rs, beg, end, std], [sl], O_SLICE,
         {0: ("i32", 1), 1: ("i32", 3), 4: ("i32", 0)})
    cc = T("cc", [1, 4])
    m.op(CONCAT, [sl, rs], [cc], O_CONCAT, {0: ("i32", -1), 1: ("i8", 0)})
    fw = T("fc_w", [3, 4], data=[0.5] * 12)
    fc = T("fc", [1, 3])
    m.op(FC, [cc, fw, -1], [fc], O_FC, {0: ("i8", 1), 2: ("bool", 1)})
    half = T("half", [3], F16, data=[0.5, 1.0, 2.0])
    dq = T("dq", [3])
    m.op(DEQUANT, [half], [dq])
    ge = T("ge", [1, 3], BOOL)
    m.op(GE, [fc, dq], [ge])
    ls = T("ls", [1, 3], BOOL)
    m.op(LESS, [fc, dq], [ls])
    cf = T("cf", [1, 3])
    m.op(CAST, [ge], [cf], O_CAST, {0: ("i8", BOOL), 1: ("i8", F32)})
    sm = T("sm", [1, 3])
    m.op(SOFTMAX, [fc], [sm], O_SOFTMAX, {0: ("f32", 1.0)})
    l2 = T("l2", [1, 3])
    m.op(L2, [cf], [l2], O_L2, {0: ("i8", 0)})
    m.inputs, m.outputs = [x], [sm, l2, ls]
    return m


# ------------------------------------------------------------ the cases

def u32_at(b, pos, v):
    struct.pack_into("<I", b, pos, v & 0xFFFFFFFF)
    return b


def cases():
    out = {}
    base = tiny()
    good = base.build()
    out["valid_tiny"] = good
    out["valid_every_op"] = every_op().build()

    # Byte-level damage to the tiny model. Positions come from the writer.
    n = len(good)
    out["malformed_empty"] = b""
    out["malformed_3_bytes"] = good[:3]
    out["malformed_truncated_header"] = good[:12]
    out["malformed_truncated_half"] = good[: n // 2]
    out["malformed_truncated_last_byte"] = good[: n - 1]
    b = bytearray(good); b[4:8] = b"ABCD"
    out["malformed_bad_identifier"] = b
    out["malformed_root_past_end"] = u32_at(bytearray(good), 0, n + 16)
    out["malformed_root_offset_zero"] = u32_at(bytearray(good), 0, 0)
    root = base.root
    b = bytearray(good); struct.pack_into("<i", b, root.pos, root.pos + 4)
    out["malformed_vtable_before_start"] = b
    b = bytearray(good); struct.pack_into("<i", b, root.pos, -(n - root.pos))
    out["malformed_vtable_past_end"] = b
    b = bytearray(good); struct.pack_into("<H", b, root.vt, 5)
    out["malformed_vtable_odd_size"] = b
    b = bytearray(good); struct.pack_into("<H", b, root.vt + 2, 0xFFF0)
    out["malformed_table_size_past_end"] = b
    b = bytearray(good); struct.pack_into("<H", b, root.vt + 4 + 2 * 0, 200)
    out["malformed_field_beyond_table"] = b
    sg = base.sg
    tens_vec = sg.fields[0][1]
    out["malformed_vector_length_huge"] = u32_at(bytearray(good), tens_vec.pos,
                                                 0xFFFFFFF0)
    ops_vec = sg.fields[3][1]
    out["malformed_vector_past_end"] = u32_at(bytearray(good), ops_vec.pos, n)
    name = base.t_tables[0].fields[3][1]
    b = bytearray(good); b[name.pos + 4 + len(name.s)] = ord("X")
    out["malformed_string_no_nul"] = b
    out["malformed_string_length_past_end"] = u32_at(bytearray(good),
                                                     name.pos, n)
    out["malformed_subgraph_offset_past_end"] = u32_at(
        bytearray(good), base.sg_vec.pos + 4, 0xFFFFFFF0)
    out["malformed_tensor_offset_past_end"] = u32_at(
        bytearray(good), tens_vec.pos + 4 + 4 * 2, n + 4)
    shape = base.t_tables[1].fields[0][1]
    out["malformed_shape_offset_past_end"] = u32_at(
        bytearray(good), base.t_tables[1].field_pos[0], 0xFFFFFFF0)
    out["malformed_shape_length_huge"] = u32_at(bytearray(good), shape.pos,
                                                0x40000000)

    # Damage expressed on the model itself.
    def variant(key, edit, **kw):
        m = tiny(**kw)
        edit(m)
        out[key] = m.build()

    def set_op(i, k, v):
        return lambda m: m.ops[i].__setitem__(k, v)

    def set_tensor(i, k, v):
        return lambda m: m.tensors[i].__setitem__(k, v)

    variant("malformed_tensor_index_out_of_range", set_op(1, "ins", [99]))
    variant("malformed_input_minus_one_not_optional", set_op(1, "ins", [-1]))
    variant("malformed_read_before_write",
            lambda m: m.ops.reverse())
    variant("malformed_written_twice", set_op(1, "outs", [3]))
    variant("malformed_op_writes_constant", set_op(1, "outs", [1]))
    variant("malformed_op_writes_graph_input", set_op(1, "outs", [0]))
    variant("malformed_output_never_written",
            lambda m: m.outputs.append(m.tensor("orphan", [1])))
    variant("malformed_buffer_size_mismatch",
            lambda m: m.buffers[2].fields.__setitem__(
                0, ("off", Vec("u8", b"\0\0\0\0"))))
    variant("malformed_buffer_index_out_of_range", set_tensor(2, "buffer", 50))
    variant("malformed_negative_dim", set_tensor(0, "shape", [1, -4, 4, 2]))
    variant("malformed_options_type_mismatch", set_op(0, "opt_type", O_POOL))
    variant("malformed_opcode_index_out_of_range", set_op(1, "opcode", 7))
    variant("malformed_stride_zero", lambda m: None, sw=0)
    variant("malformed_padding_value", lambda m: None, pad=7)
    variant("malformed_no_subgraphs",
            lambda m: setattr(m, "n_subgraphs", 0))
    variant("malformed_external_buffer_out_of_range",
            lambda m: m.buffers.__setitem__(
                1, Table({1: ("u64", 100000), 2: ("u64", 16)})))
    variant("malformed_negative_builtin_code",
            lambda m: m.codes.__setitem__(1, (-5, None)))
    variant("malformed_relu_two_outputs", set_op(1, "outs", [4, 3]))

    variant("unsupported_op_tanh", lambda m: m.codes.__setitem__(1, (TANH, None)))
    variant("unsupported_custom_op",
            lambda m: m.codes.__setitem__(1, (CUSTOM, "MyFancyOp")))
    # Several unsupported ops at once: the message must list every one.
    def several_unsupported(m):
        m.codes.__setitem__(1, (TANH, None))
        z = m.tensor("z", [1, 4, 4, 2])
        w = m.tensor("w2", [1, 4, 4, 2])
        m.op(CUSTOM, [4], [z], custom="MyFancyOp")
        m.op(TANH, [z], [w])
        m.outputs = [w]
    variant("unsupported_several_ops", several_unsupported)
    variant("unsupported_builtin_code_200",
            lambda m: m.codes.__setitem__(1, (200, None)))
    variant("unsupported_two_subgraphs", lambda m: setattr(m, "n_subgraphs", 2))
    variant("unsupported_schema_version_2", lambda m: setattr(m, "version", 2))
    variant("unsupported_int8_quantized",
            lambda m: m.tensors[1].update(
                type=INT8, quant=Table({2: ("off", Vec("f32", [0.1])),
                                        3: ("off", Vec("i64", [0]))})))
    variant("unsupported_rank_7", set_tensor(0, "shape", [1] * 7))
    variant("unsupported_string_tensor", set_tensor(3, "type", STRING))
    variant("unsupported_fused_tanh", lambda m: None, act=4)
    variant("unsupported_softmax_beta",
            lambda m: (m.codes.__setitem__(1, (SOFTMAX, None)),
                       m.ops[1].update(opt_type=O_SOFTMAX,
                                       opts={0: ("f32", 0.5)})))
    variant("unsupported_no_operators", lambda m: (
        m.ops.clear(), m.outputs.__setitem__(0, 0)))

    m = tiny()
    m.op(FC, [4, 1, -1], [m.tensor("f", [1, 2])], O_FC, {1: ("i8", 1)})
    out["unsupported_fc_shuffled_weights"] = m.build()
    m = tiny()
    m.op(RESHAPE, [4, 4], [m.tensor("r", [32])])
    out["unsupported_reshape_computed_shape"] = m.build()

    # is_variable (Tensor field 5) is not in Model above: add it by hand.
    m = tiny()
    m.build()
    m.t_tables[3].fields[5] = ("bool", 1)
    out["unsupported_variable_tensor"] = serialize(m.root)
    return out


def main():
    os.makedirs(SEEDS, exist_ok=True)
    all_cases = cases()
    for key, data in sorted(all_cases.items()):
        for d in (HERE, SEEDS):
            with open(os.path.join(d, key + ".tflite"), "wb") as f:
                f.write(bytes(data))
    big = max(len(v) for k, v in all_cases.items() if k != "valid_every_op")
    print("wrote %d cases (largest broken case %d bytes)" % (len(all_cases), big))


if __name__ == "__main__":
    main()
