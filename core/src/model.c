/* model.c - loading a model: read, fingerprint, import, check, optimise. */
#include "model_impl.h"
#include "optimizer.h"
#include "tflite_import.h"

#include <sodium.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No bundled model is near this; it bounds what a hostile path can make us
 * allocate. */
#define FPAY_MAX_MODEL_BYTES ((size_t)512 << 20)

static void fingerprint(const void *data, size_t size, char hex[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, size);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
}

fpay_status fpay_model_load_memory(const void *data, size_t size, unsigned flags,
                                   fpay_model **out, char *err, size_t err_len)
{
    if (!out || (!data && size)) {
        fpay_set_err(err, err_len, "model: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (size == 0) {
        fpay_set_err(err, err_len, "model: empty input");
        return FPAY_MODEL_MALFORMED;
    }
    if (size > FPAY_MAX_MODEL_BYTES) {
        fpay_set_err(err, err_len, "model: %zu bytes exceeds the %zu-byte limit", size,
                     FPAY_MAX_MODEL_BYTES);
        return FPAY_LIMIT_EXCEEDED;
    }
    fpay_model *m = calloc(1, sizeof *m);
    if (!m) {
        fpay_set_err(err, err_len, "model: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    fpay_graph_init(&m->graph);
    fingerprint(data, size, m->sha256);

    char msg[256] = "";
    fpay_status st = fpay_tflite_import(data, size, &m->graph, msg, sizeof msg);
    if (st == FPAY_OK) {
        m->imported_nodes = m->graph.n_nodes;
        for (int i = 0; i < m->graph.n_nodes; i++)
            m->imported_op_counts[m->graph.nodes[i].op]++;
        st = fpay_graph_infer_shapes(&m->graph, msg, sizeof msg);
    }
    if (st == FPAY_OK && !(flags & FPAY_LOAD_NO_OPTIMIZE))
        st = fpay_optimize(&m->graph, NULL, msg, sizeof msg);
    if (st != FPAY_OK) {
        fpay_set_err(err, err_len, "model: %s", msg[0] ? msg : fpay_status_str(st));
        fpay_model_free(m);
        return st;
    }
    *out = m;
    return FPAY_OK;
}

fpay_status fpay_model_load_file(const char *path, unsigned flags,
                                 fpay_model **out, char *err, size_t err_len)
{
    if (!path || !out) {
        fpay_set_err(err, err_len, "model: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    *out = NULL;
    FILE *f;
    int oe = fpay_open_regular(path, &f);
    if (oe) {
        fpay_set_err(err, err_len, "%s: %s", path, oe < 0 ? "not a regular file" : strerror(oe));
        return oe == ENOENT ? FPAY_NOT_FOUND : FPAY_IO_ERROR;
    }
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fpay_set_err(err, err_len, "%s: not a regular file", path);
        fclose(f);
        return FPAY_IO_ERROR;
    }
    if ((unsigned long)len > FPAY_MAX_MODEL_BYTES) {
        fpay_set_err(err, err_len, "%s: %ld bytes exceeds the model size limit", path, len);
        fclose(f);
        return FPAY_LIMIT_EXCEEDED;
    }
    if (len == 0) {
        fpay_set_err(err, err_len, "%s: file is empty", path);
        fclose(f);
        return FPAY_MODEL_MALFORMED;
    }
    uint8_t *buf = malloc((size_t)len);
    if (!buf) {
        fpay_set_err(err, err_len, "%s: out of memory", path);
        fclose(f);
        return FPAY_OUT_OF_MEMORY;
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (got != (size_t)len) {
        fpay_set_err(err, err_len, "%s: short read", path);
        free(buf);
        return FPAY_IO_ERROR;
    }
    char msg[256] = "";
    fpay_status st = fpay_model_load_memory(buf, (size_t)len, flags, out, msg, sizeof msg);
    free(buf);
    if (st != FPAY_OK)
        fpay_set_err(err, err_len, "%s: %s", path, msg);
    return st;
}

void fpay_model_free(fpay_model *m)
{
    if (!m)
        return;
    fpay_graph_free(&m->graph);
    free(m);
}

fpay_status fpay_model_stats_get(const fpay_model *m, fpay_model_stats *s)
{
    if (!m || !s || s->struct_size < sizeof *s)
        return FPAY_INVALID_ARGUMENT;
    const fpay_graph *g = &m->graph;
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->imported_nodes = m->imported_nodes;
    s->nodes = g->n_nodes;
    s->inputs = g->n_inputs;
    s->outputs = g->n_outputs;
    bool *used = calloc((size_t)g->n_tensors + 1, sizeof(bool));
    if (!used)
        return FPAY_OUT_OF_MEMORY;
    for (int i = 0; i < g->n_inputs; i++)
        used[g->inputs[i]] = true;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                used[n->inputs[k]] = true;
        if (n->act_slope >= 0)
            used[n->act_slope] = true;
        for (int k = 0; k < n->n_outputs; k++)
            used[n->outputs[k]] = true;
    }
    for (int t = 0; t < g->n_tensors; t++) {
        if (!used[t])
            continue;
        s->tensors++;
        if (g->tensors[t].flags & FPAY_TENSOR_CONST)
            s->parameters += fpay_tensor_count(&g->tensors[t]);
    }
    free(used);
    s->macs = fpay_graph_macs(g);
    memcpy(s->sha256, m->sha256, sizeof s->sha256);
    return FPAY_OK;
}

int fpay_model_node_count(const fpay_model *m) { return m ? m->graph.n_nodes : -1; }

const char *fpay_model_node_op(const fpay_model *m, int index)
{
    if (!m || index < 0 || index >= m->graph.n_nodes)
        return NULL;
    return fpay_op_name(m->graph.nodes[index].op);
}

static fpay_status histogram(const int *counts, char *buf, size_t len)
{
    if (!buf || len == 0)
        return FPAY_INVALID_ARGUMENT;
    buf[0] = '\0';
    bool done[FPAY_OP_COUNT_] = {false};
    size_t used = 0;
    for (;;) {
        int best = -1;
        for (int op = 0; op < FPAY_OP_COUNT_; op++)
            if (!done[op] && counts[op] > 0 && (best < 0 || counts[op] > counts[best]))
                best = op;
        if (best < 0)
            break;
        done[best] = true;
        int w = snprintf(buf + used, len - used, "%s%s x%d", used ? ", " : "",
                         fpay_op_name((fpay_op)best), counts[best]);
        if (w < 0 || (size_t)w >= len - used)
            return FPAY_LIMIT_EXCEEDED;
        used += (size_t)w;
    }
    return FPAY_OK;
}

fpay_status fpay_model_imported_ops(const fpay_model *m, char *buf, size_t len)
{
    if (!m)
        return FPAY_INVALID_ARGUMENT;
    return histogram(m->imported_op_counts, buf, len);
}

fpay_status fpay_model_ops(const fpay_model *m, char *buf, size_t len)
{
    if (!m)
        return FPAY_INVALID_ARGUMENT;
    int counts[FPAY_OP_COUNT_] = {0};
    for (int i = 0; i < m->graph.n_nodes; i++)
        counts[m->graph.nodes[i].op]++;
    return histogram(counts, buf, len);
}
