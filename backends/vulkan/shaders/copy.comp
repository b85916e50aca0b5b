// copy.comp - RESHAPE: the bytes do not change, only the shape.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint total;
} pc;

void main()
{
    uint i = fpay_gid();
    if (i < pc.total)
        SY(i, LX(i));
}
