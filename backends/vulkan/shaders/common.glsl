// common.glsl - included by every facepay compute shader.
//
// Two storage buffers for the whole partition: A holds every activation
// tensor (and constant operands of elementwise ops), Wt the packed weights,
// biases and PReLU slopes. Each shader's push constants give tensor offsets
// (in floats) into them and the shapes, so one pipeline per op family serves
// every node.
layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) buffer Act { float A[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wts { float Wt[]; };

// Flat invocation index over a 2-D grid of 64-wide workgroups (the host
// splits large dispatches over y to stay under maxComputeWorkGroupCount).
uint fpay_gid()
{
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64u +
           gl_LocalInvocationID.x;
}

#include "epilogue.glsl"
