/* Account number normalisation (phones to E.164, Chinese identity cards)
 * and the reason/decision names. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "service/service_internal.h"

static fpay_status norm(fpay_id_kind kind, const char *typed, const char *cc,
                        char *out)
{
    char err[160] = "";
    fpay_status st = fpay_account_id_normalize(kind, typed, cc, out,
                                               FPAY_ACCOUNT_ID_MAX, err, sizeof err);
    if (st != FPAY_OK) {
        cr_expect(err[0] != '\0', "a refusal must say why (%s)", typed);
        cr_expect(out[0] == '\0', "a refusal leaves no partial number");
    } else {
        cr_expect(strlen(out) < FPAY_ACCOUNT_ID_MAX);
    }
    return st;
}

static void phone_ok(const char *typed, const char *cc, const char *want)
{
    char out[FPAY_ACCOUNT_ID_MAX];
    cr_assert_eq(norm(FPAY_ID_PHONE, typed, cc, out), FPAY_OK, "%s refused", typed);
    cr_expect_str_eq(out, want, "%s -> %s, want %s", typed, out, want);
}

static void phone_bad(const char *typed, const char *cc)
{
    char out[FPAY_ACCOUNT_ID_MAX];
    cr_expect_eq(norm(FPAY_ID_PHONE, typed, cc, out), FPAY_INVALID_ARGUMENT,
                 "'%s' accepted as %s", typed, out);
}

static void id_ok(const char *typed, const char *want)
{
    char out[FPAY_ACCOUNT_ID_MAX];
    cr_assert_eq(norm(FPAY_ID_CN_RESIDENT, typed, NULL, out), FPAY_OK, "%s refused",
                 typed);
    cr_expect_str_eq(out, want);
}

static void id_bad(const char *typed)
{
    char out[FPAY_ACCOUNT_ID_MAX];
    cr_expect_eq(norm(FPAY_ID_CN_RESIDENT, typed, NULL, out), FPAY_INVALID_ARGUMENT,
                 "'%s' accepted", typed);
}

Test(ids, phone_forms)
{
    phone_ok("+86 138-0013-8000", NULL, "+8613800138000");
    phone_ok("0086 (138) 0013.8000", NULL, "+8613800138000");
    phone_ok("138 0013 8000", "86", "+8613800138000");
    phone_ok("+1 (415) 555-2671", "86", "+14155552671");
    phone_ok("[20] 7946-0958", "44", "+442079460958");
    /* The same person typed three ways is one account. */
    char a[FPAY_ACCOUNT_ID_MAX], b[FPAY_ACCOUNT_ID_MAX];
    cr_assert_eq(norm(FPAY_ID_PHONE, "13800138000", "86", a), FPAY_OK);
    cr_assert_eq(norm(FPAY_ID_PHONE, "+86.138.0013.8000", NULL, b), FPAY_OK);
    cr_expect_str_eq(a, b);
}

Test(ids, phone_lengths)
{
    /* 8 digits with the country code is the shortest accepted, 15 the
     * longest (E.164). */
    phone_bad("+1234567", NULL);
    phone_ok("+12345678", NULL, "+12345678");
    phone_ok("+123456789012345", NULL, "+123456789012345");
    phone_bad("+1234567890123456", NULL);
    /* The default country code counts too. */
    phone_ok("1234567890123", "86", "+861234567890123");
    phone_bad("12345678901234", "86");
    phone_bad("123456", "1");
}

Test(ids, phone_refusals)
{
    phone_bad("", "86");
    phone_bad("+", NULL);
    phone_bad("   ", "86");
    phone_bad("+86 138 0013 800O", NULL);          /* letter O */
    phone_bad("+86 138 0013 8000 ext 5", NULL);
    phone_bad("+86\t13800138000", NULL);           /* tab is not a separator */
    phone_bad("+86 13800138000\xc2\xa0", NULL);    /* NBSP, non-ASCII */
    phone_bad("+86 1380013\xff" "8000", NULL);
    phone_bad("86+13800138000", NULL);             /* misplaced + */
    phone_bad("++8613800138000", NULL);
    phone_bad("+0 86 13800138000", NULL);          /* country code 0... */
    phone_bad("000 86 13800138000", NULL);
    phone_bad("13800138000", NULL);                /* no default country */
    phone_bad("13800138000", "");
    phone_bad("13800138000", "0");
    phone_bad("13800138000", "8a");
    phone_bad("13800138000", "8612");
    /* Far too long: refused before walking it all. */
    char longer[4096];
    memset(longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    phone_bad(longer, "86");
}

Test(ids, bad_arguments)
{
    char out[FPAY_ACCOUNT_ID_MAX];
    char err[128];
    cr_expect_eq(fpay_account_id_normalize(FPAY_ID_PHONE, NULL, "86", out, sizeof out,
                                           err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_account_id_normalize(FPAY_ID_PHONE, "+8613800138000", NULL, out,
                                           8, err, sizeof err),
                 FPAY_INVALID_ARGUMENT, "output under FPAY_ACCOUNT_ID_MAX");
    cr_expect_eq(fpay_account_id_normalize((fpay_id_kind)7, "+8613800138000", NULL,
                                           out, sizeof out, NULL, 0),
                 FPAY_INVALID_ARGUMENT);
}

Test(ids, cn_resident_valid)
{
    /* Check digits computed independently (ISO 7064 MOD 11-2 by hand). */
    id_ok("110101199001010023", "110101199001010023");
    id_ok("110101200002290018", "110101200002290018"); /* 2000 is leap */
    id_ok("11010519491231002X", "11010519491231002X");
    id_ok("11010519491231002x", "11010519491231002X");
    id_ok("110105 19991231 0014", "110105199912310014");
}

Test(ids, cn_resident_invalid)
{
    id_bad("110101199001010024");   /* wrong check digit */
    id_bad("110101199001010020");
    id_bad("110105199902300015");   /* 1999-02-30, check digit right */
    id_bad("110105200002300015");   /* 2000-02-30 */
    id_bad("110105190002290017");   /* 1900 is not leap */
    id_bad("110105189901010017");   /* 1899 */
    id_bad("110105210101010012");   /* 2101 */
    id_bad("110105190013010017");   /* month 13 */
    id_bad("11010119900101002");    /* 17 characters */
    id_bad("1101011990010100233");  /* 19 */
    id_bad("1101011990010100X3");   /* X not last */
    id_bad("11010119900101002Y");
    id_bad("");
    id_bad("\xef\xbc\x91" "10101199001010023"); /* full-width digit one */
}

Test(ids, check_digit_independent)
{
    /* For every base, exactly one of the 11 check characters is accepted,
     * and it is the one the formula gives. */
    static const char *bases[] = {"11010119900101002", "44030419900307123",
                                  "51010720011111555"};
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        int sum = 0;
        for (int i = 0; i < 17; i++)
            sum += (bases[b][i] - '0') * w[i];
        /* (sum + value of check) % 11 == 1, with X = 10 */
        int v = (12 - sum % 11) % 11;
        char want = v == 10 ? 'X' : (char)('0' + v);
        int accepted = 0;
        for (const char *ch = "0123456789X"; *ch; ch++) {
            char id[19], out[FPAY_ACCOUNT_ID_MAX];
            memcpy(id, bases[b], 17);
            id[17] = *ch;
            id[18] = '\0';
            if (fpay_account_id_normalize(FPAY_ID_CN_RESIDENT, id, NULL, out,
                                          sizeof out, NULL, 0) == FPAY_OK) {
                accepted++;
                cr_expect_eq(*ch, want, "%s accepted, want check %c", id, want);
            }
        }
        cr_expect_eq(accepted, 1);
    }
}

Test(ids, reason_names)
{
    cr_expect_str_eq(fpay_reason_name(FPAY_REASON_NONE), "NONE");
    cr_expect_str_eq(fpay_reason_name(FPAY_REASON_NO_MATCH), "NO_MATCH");
    cr_expect_str_eq(fpay_reason_name(FPAY_REASON_INTERNAL_ERROR), "INTERNAL_ERROR");
    cr_expect_str_eq(fpay_reason_str(FPAY_REASON_LOCKED),
                     "account locked after repeated failures");
    cr_expect_str_eq(fpay_reason_name((fpay_reason)999), "UNKNOWN");
    cr_expect_str_eq(fpay_decision_name(FPAY_APPROVE), "APPROVE");
    cr_expect_str_eq(fpay_decision_name(FPAY_DECLINE), "DECLINE");
    cr_expect_str_eq(fpay_decision_name((fpay_decision)5), "DECLINE");
}

Test(ids, row_clear)
{
    fpay_account_row row;
    memset(&row, 0x5a, sizeof row);
    row.blob = malloc(16);
    row.blob_len = 16;
    fpay_account_row_clear(&row);
    cr_expect_null(row.blob);
    cr_expect_eq(row.blob_len, 0);
    fpay_account_row_clear(&row); /* twice is harmless */
    fpay_account_row_clear(NULL);
}
