// common.glsl - included by every facepay compute shader.
//
// Four storage-buffer bindings per node (one descriptor set each): X the
// first input, Y the output, B the second input (binary operand or the
// conv's residual; X again when unused), each bound to exactly the tensor's
// range of the activation arena (or, for a constant operand, of the weights
// buffer), so indices start at 0 and a batch may be as large as
// maxStorageBufferRange per tensor; Wt the whole packed weights buffer
// (weights, biases, PReLU slopes, at offsets in elements given by the push
// constants).
//
// Every shader is compiled twice from the same source (CMakeLists.txt): the
// fp32 variant, and with FP16 defined the fp16 variant, where all four
// buffers hold float16_t (activations and constants alike; offsets and
// indices count elements, so the host passes element offsets either way).
// The fp16 variant needs only GL_EXT_shader_16bit_storage
// (storageBuffer16BitAccess): every load is widened to float and all
// arithmetic, accumulation included, is fp32; only the final store rounds
// to fp16. A product of two fp16 values is exact in fp32 (11 + 11 bits of
// significand fit in 24), so a dot product carries no error beyond the
// rounding of its operands and the fp32 sums; doing the multiply in
// float16_t (shaderFloat16) would add a rounding per term for no gain in a
// shader bound by memory.
#ifdef FP16
#extension GL_EXT_shader_16bit_storage : require
#define fpay_elem_t float16_t
#else
#define fpay_elem_t float
#endif

layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Xb { fpay_elem_t X[]; };
layout(std430, set = 0, binding = 1) buffer Yb { fpay_elem_t Y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bb { fpay_elem_t B[]; };
layout(std430, set = 0, binding = 3) readonly buffer Wb { fpay_elem_t Wt[]; };

// Loads as float (a no-op in the fp32 variant), and the one rounding store.
#define LX(i) float(X[i])
#define LB(i) float(B[i])
#define LW(i) float(Wt[i])
#define SY(i, v) (Y[i] = fpay_elem_t(v))

// Flat invocation index over a 2-D grid of 64-wide workgroups (the host
// splits large dispatches over y to stay under maxComputeWorkGroupCount).
uint fpay_gid()
{
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64u +
           gl_LocalInvocationID.x;
}

#include "epilogue.glsl"
