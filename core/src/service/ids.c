/*
 * ids.c - account numbers as typed at a terminal, normalised so that the
 * same person always gets the same keyed hash; reason and decision names.
 *
 * The typed number is hostile: any byte may arrive. Nothing here stores or
 * logs it, and error messages never echo it (a message may reach a log).
 */
#include "service_internal.h"

#include "status.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Longer than any sane typed form (15 digits and separators); the bound
 * keeps a hostile megabyte-long string from being walked. */
#define TYPED_MAX 64

/* E.164: at most 15 digits with the country code. The lower bound is ours:
 * no country has subscriber numbers so short that country code plus number
 * is under 8 digits, and shorter strings are typing mistakes. */
#define E164_MIN_DIGITS 8
#define E164_MAX_DIGITS 15

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int is_separator(unsigned char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' ||
           c == '[' || c == ']';
}

static fpay_status normalize_phone(const char *typed, const char *default_cc,
                                   char *out, size_t out_len, char *err,
                                   size_t el)
{
    char digits[TYPED_MAX + 1];
    size_t nd = 0;
    int plus = 0;
    size_t n = strnlen(typed, TYPED_MAX + 1);
    if (n > TYPED_MAX) {
        fpay_set_err(err, el, "phone number: longer than %d characters",
                     TYPED_MAX);
        return FPAY_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)typed[i];
        if (is_digit(c)) {
            digits[nd++] = (char)c;
        } else if (c == '+') {
            /* Only as the very first non-separator character: "12+34" is a
             * typing error, not a prefix. */
            if (plus || nd > 0) {
                fpay_set_err(err, el, "phone number: misplaced '+'");
                return FPAY_INVALID_ARGUMENT;
            }
            plus = 1;
        } else if (!is_separator(c)) {
            fpay_set_err(err, el,
                         "phone number: character %zu is not a digit, '+' or "
                         "separator",
                         i + 1);
            return FPAY_INVALID_ARGUMENT;
        }
    }
    if (nd == 0) {
        fpay_set_err(err, el, "phone number: no digits");
        return FPAY_INVALID_ARGUMENT;
    }

    const char *rest = digits; /* country code and number, no prefix */
    size_t nrest = nd;
    char full[TYPED_MAX + 8];
    if (plus) {
        /* "+00..." is not a form anyone dials; refuse rather than guess. */
    } else if (nd >= 2 && digits[0] == '0' && digits[1] == '0') {
        rest = digits + 2;
        nrest = nd - 2;
    } else {
        if (!default_cc || !default_cc[0]) {
            fpay_set_err(err, el,
                         "phone number: no '+' or '00' prefix and no default "
                         "country code configured");
            return FPAY_INVALID_ARGUMENT;
        }
        size_t ncc = strnlen(default_cc, 5);
        if (ncc > 3 || default_cc[0] == '0') {
            fpay_set_err(err, el,
                         "phone number: default country code must be 1-3 "
                         "digits not starting with 0");
            return FPAY_INVALID_ARGUMENT;
        }
        for (size_t i = 0; i < ncc; i++) {
            if (!is_digit((unsigned char)default_cc[i])) {
                fpay_set_err(err, el,
                             "phone number: default country code must be "
                             "digits");
                return FPAY_INVALID_ARGUMENT;
            }
        }
        memcpy(full, default_cc, ncc);
        memcpy(full + ncc, digits, nd);
        rest = full;
        nrest = ncc + nd;
    }
    if (nrest < E164_MIN_DIGITS || nrest > E164_MAX_DIGITS) {
        fpay_set_err(err, el,
                     "phone number: %zu digits with the country code, E.164 "
                     "needs %d to %d",
                     nrest, E164_MIN_DIGITS, E164_MAX_DIGITS);
        return FPAY_INVALID_ARGUMENT;
    }
    if (rest[0] == '0') {
        fpay_set_err(err, el, "phone number: country code cannot start with 0");
        return FPAY_INVALID_ARGUMENT;
    }
    if (out_len < nrest + 2) {
        fpay_set_err(err, el, "phone number: output buffer too small");
        return FPAY_INVALID_ARGUMENT;
    }
    out[0] = '+';
    memcpy(out + 1, rest, nrest);
    out[nrest + 1] = '\0';
    sodium_memzero(digits, sizeof digits);
    sodium_memzero(full, sizeof full);
    return FPAY_OK;
}

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int valid_date(int y, int m, int d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1)
        return 0;
    int max = mdays[m - 1] + (m == 2 && is_leap(y));
    return d <= max;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* GB 11643-1999: 17 digits (region, birth date, sequence) and an ISO 7064
 * MOD 11-2 check character. */
static fpay_status normalize_cn_id(const char *typed, char *out, size_t out_len,
                                   char *err, size_t el)
{
    static const int weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6,
                                    3, 7, 9, 10, 5, 8, 4, 2};
    static const char check_map[11] = "10X98765432";
    char id[19];
    size_t k = 0;
    size_t n = strnlen(typed, TYPED_MAX + 1);
    if (n > TYPED_MAX) {
        fpay_set_err(err, el, "identity card number: longer than %d characters",
                     TYPED_MAX);
        return FPAY_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)typed[i];
        if (c == ' ')
            continue; /* printed cards group the digits 6-8-4 */
        if (k >= 18) {
            fpay_set_err(err, el, "identity card number: more than 18 characters");
            return FPAY_INVALID_ARGUMENT;
        }
        if (c == 'x')
            c = 'X';
        if (!(is_digit(c) || (c == 'X' && k == 17))) {
            fpay_set_err(err, el,
                         "identity card number: character %zu must be a digit%s",
                         i + 1, k == 17 ? " or X" : "");
            return FPAY_INVALID_ARGUMENT;
        }
        id[k++] = (char)c;
    }
    if (k != 18) {
        fpay_set_err(err, el, "identity card number: %zu characters, needs 18", k);
        return FPAY_INVALID_ARGUMENT;
    }
    id[18] = '\0';
    if (!valid_date(num(id + 6, 4), num(id + 10, 2), num(id + 12, 2))) {
        fpay_set_err(err, el, "identity card number: invalid birth date");
        return FPAY_INVALID_ARGUMENT;
    }
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += (id[i] - '0') * weights[i];
    if (check_map[sum % 11] != id[17]) {
        fpay_set_err(err, el, "identity card number: check digit does not match");
        return FPAY_INVALID_ARGUMENT;
    }
    if (out_len < sizeof id) {
        fpay_set_err(err, el, "identity card number: output buffer too small");
        return FPAY_INVALID_ARGUMENT;
    }
    memcpy(out, id, sizeof id);
    sodium_memzero(id, sizeof id);
    return FPAY_OK;
}

fpay_status fpay_account_id_normalize(fpay_id_kind kind, const char *typed,
                                      const char *default_country_code,
                                      char *out, size_t out_len, char *err,
                                      size_t err_len)
{
    if (!typed || !out || out_len < FPAY_ACCOUNT_ID_MAX) {
        fpay_set_err(err, err_len, "account number: NULL argument or output "
                                   "buffer under FPAY_ACCOUNT_ID_MAX");
        if (out && out_len)
            out[0] = '\0';
        return FPAY_INVALID_ARGUMENT;
    }
    out[0] = '\0';
    fpay_status st;
    switch (kind) {
    case FPAY_ID_PHONE:
        st = normalize_phone(typed, default_country_code, out, out_len, err,
                             err_len);
        break;
    case FPAY_ID_CN_RESIDENT:
        st = normalize_cn_id(typed, out, out_len, err, err_len);
        break;
    default:
        fpay_set_err(err, err_len, "account number: unknown kind %d", (int)kind);
        return FPAY_INVALID_ARGUMENT;
    }
    if (st != FPAY_OK)
        out[0] = '\0';
    return st;
}

const char *fpay_reason_name(fpay_reason r)
{
    switch (r) {
#define FPAY_REASON_NAME_(name, code, text)                                   \
    case FPAY_REASON_##name:                                                  \
        return #name;
        FPAY_REASON_LIST(FPAY_REASON_NAME_)
#undef FPAY_REASON_NAME_
    }
    return "UNKNOWN";
}

const char *fpay_reason_str(fpay_reason r)
{
    switch (r) {
#define FPAY_REASON_STR_(name, code, text)                                    \
    case FPAY_REASON_##name:                                                  \
        return text;
        FPAY_REASON_LIST(FPAY_REASON_STR_)
#undef FPAY_REASON_STR_
    }
    return "unknown reason";
}

const char *fpay_decision_name(fpay_decision d)
{
    /* Anything but an explicit APPROVE reads as a decline. */
    return d == FPAY_APPROVE ? "APPROVE" : "DECLINE";
}

void fpay_account_row_clear(fpay_account_row *row)
{
    if (!row)
        return;
    if (row->blob) {
        sodium_memzero(row->blob, row->blob_len);
        free(row->blob);
    }
    memset(row, 0, sizeof *row);
}
