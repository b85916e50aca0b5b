// common.glsl - included by every facepay compute shader.
//
// Four storage-buffer bindings per node (one descriptor set each): X the
// first input, Y the output, B the second input (binary operand or the
// conv's residual; X again when unused), each bound to exactly the tensor's
// range of the activation arena (or, for a constant operand, of the weights
// buffer), so indices start at 0 and a batch may be as large as
// maxStorageBufferRange per tensor; Wt the whole packed weights buffer
// (weights, biases, PReLU slopes, at offsets in floats given by the push
// constants).
layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Xb { float X[]; };
layout(std430, set = 0, binding = 1) buffer Yb { float Y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bb { float B[]; };
layout(std430, set = 0, binding = 3) readonly buffer Wb { float Wt[]; };

// Flat invocation index over a 2-D grid of 64-wide workgroups (the host
// splits large dispatches over y to stay under maxComputeWorkGroupCount).
uint fpay_gid()
{
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64u +
           gl_LocalInvocationID.x;
}

#include "epilogue.glsl"
