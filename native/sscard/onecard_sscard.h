/*
 * libonecard_sscard: the LD/T 33 unified reader interface of a onecard counter.
 *
 * A drop-in for the reader vendor's library hospital information systems load: the same
 * function names, signatures and return codes (0 success, negative failure). The library
 * never touches a card: it asks the running onecard counter service over a Unix socket
 * (ONECARD_SSCARD_SOCKET, default /run/onecard/sscard.sock) and copies the answer into the
 * caller's buffer. See docs/his-integration.md.
 *
 * Buffers: every pOutInfo must hold at least SSCARD_OUT_SIZE (1024) bytes; the library
 * writes at most that many, NUL included. On failure pOutInfo holds a short ASCII reason.
 * Text is GBK unless UTF-8 was chosen (iSSCardInit or ONECARD_SSCARD_ENCODING=UTF-8).
 * All functions may be called from several threads at once.
 */
#ifndef ONECARD_SSCARD_H
#define ONECARD_SSCARD_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SSCARD_CALL __stdcall
#else
#define SSCARD_CALL
#endif

#define SSCARD_OUT_SIZE 1024
#define SSCARD_DEFAULT_SOCKET "/run/onecard/sscard.sock"

/* iType: which interface to read. */
#define SSCARD_TYPE_CONTACT 1
#define SSCARD_TYPE_CONTACTLESS 2
#define SSCARD_TYPE_AUTO_CONTACT_FIRST 3
#define SSCARD_TYPE_AUTO_CONTACTLESS_FIRST 4

/* Encodings for iSSCardInit. */
#define SSCARD_ENCODING_DEFAULT 0 /* ONECARD_SSCARD_ENCODING, else GBK */
#define SSCARD_ENCODING_GBK 1
#define SSCARD_ENCODING_UTF8 2

/* Return codes (LD/T 33). Card status words come back as their negative decimal value
 * (0x6A82 -> -27266). */
#define SSCARD_OK 0
#define SSCARD_E_WRONG_CARD_TYPE (-1)
#define SSCARD_E_NO_CARD (-2)
#define SSCARD_E_NOT_POWERED (-3)
#define SSCARD_E_NO_ANSWER (-4)
#define SSCARD_E_READER_CONNECTION (-11)
#define SSCARD_E_UNSUPPORTED (-13)      /* onecard: function not offered */
#define SSCARD_E_PARAMETER (-14)        /* onecard: a parameter or request refused */
#define SSCARD_E_BAD_ANSWER (-15)       /* onecard: the service's answer is malformed */
#define SSCARD_E_INTERNAL_AUTH (-21)
#define SSCARD_E_PSAM_KEY_LEVEL (-24)
#define SSCARD_E_PIN_WRONG (-51)        /* pOutInfo: the tries left, e.g. "2" */
#define SSCARD_E_PIN_BLOCKED (-52)
#define SSCARD_E_PIN_NOT_ENTERED (-55)  /* onecard: cancelled at the pad, not confirmed */
#define SSCARD_E_NO_PSAM (-2201)
#define SSCARD_E_PSAM_NO_SM4 (-2202)
#define SSCARD_E_NO_RKSSSE (-2203)

/* region|ssn|card number|card id|name|ATR historical bytes|spec version|issue date|
 * expiry date|terminal number|terminal device number|  (the card at the counter) */
long SSCARD_CALL iReadCardBas(int iType, char *pOutInfo);

/* The HSM read: Step1 outputs region|ATR historical bytes|algorithm|card id|int. process
 * factor|int. source|ext. process factor|ext. source|terminal serial|; Step2 takes the
 * HSM's answer "16 hex|32 hex" (ignored before 3.0 cards) and outputs the iReadCardBas
 * string. */
long SSCARD_CALL iReadCardBas_HSM_Step1(int iType, char *pOutInfo);
long SSCARD_CALL iReadCardBas_HSM_Step2(char *pKey, char *pOutInfo);

/* The holder types the PIN(s) on the counter's PIN pad, never through this process. */
long SSCARD_CALL iVerifyPIN(int iType, char *pOutInfo);
long SSCARD_CALL iChangePIN(int iType, char *pOutInfo);

/* service|terminal id|reader:card;reader:empty|  (asks the service) */
long SSCARD_CALL iGetReaderInfo(char *pOutInfo);
/* The library's own version; never asks the service. */
long SSCARD_CALL iGetVersion(char *pOutInfo);
/* Optional: the socket (NULL: ONECARD_SSCARD_SOCKET or the default) and the encoding of
 * every later call in this process. Returns 0, or SSCARD_E_PARAMETER. */
long SSCARD_CALL iSSCardInit(const char *pSocketPath, int iEncoding);

#ifdef __cplusplus
}
#endif

#endif
