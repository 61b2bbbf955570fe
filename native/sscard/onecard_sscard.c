/*
 * libonecard_sscard: LD/T 33 reader functions answered by the onecard counter service.
 *
 * One call = one Unix-socket connection: connect (bounded), write one request line, read
 * one answer line (bounded), close. Nothing is shared between calls but the configuration
 * set by iSSCardInit, which a mutex guards; every buffer lives on the caller's stack. The
 * protocol is documented in docs/his-integration.md and parsed by the service in
 * terminal/counter/sscard_protocol.py.
 */
#define _GNU_SOURCE
#include "onecard_sscard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define VERSION "onecard-sscard 1.0.0 (SSCARD/1)"
#define MAX_REQUEST 256
#define MAX_ANSWER (SSCARD_OUT_SIZE + 16)
#define MAX_KEY 128
#define CONNECT_TIMEOUT_MS 1000
/* A read waits for the counter's transaction (the service bounds that wait: 10 s by
 * default); PIN entry waits for a person at the pad. */
#define READ_TIMEOUT_MS 30000
#define PIN_TIMEOUT_MS 120000

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static char config_socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
static int config_encoding = SSCARD_ENCODING_DEFAULT;

/* Write the reason into the caller's buffer (always NUL-terminated, never longer). */
static long fail(char *out, long code, const char *reason) {
    if (out != NULL) {
        snprintf(out, SSCARD_OUT_SIZE, "%s", reason);
    }
    return code;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The socket path and the encoding for this call, copied under the lock. */
static void settings(char *path, size_t size, int *utf8) {
    int encoding;
    pthread_mutex_lock(&config_lock);
    snprintf(path, size, "%s", config_socket);
    encoding = config_encoding;
    pthread_mutex_unlock(&config_lock);
    if (path[0] == '\0') {
        const char *env = getenv("ONECARD_SSCARD_SOCKET");
        snprintf(path, size, "%s", (env != NULL && env[0] != '\0') ? env : SSCARD_DEFAULT_SOCKET);
    }
    if (encoding == SSCARD_ENCODING_DEFAULT) {
        const char *env = getenv("ONECARD_SSCARD_ENCODING");
        encoding = (env != NULL && (strcasecmp(env, "UTF-8") == 0 || strcasecmp(env, "UTF8") == 0))
                       ? SSCARD_ENCODING_UTF8
                       : SSCARD_ENCODING_GBK;
    }
    *utf8 = encoding == SSCARD_ENCODING_UTF8;
}

static long answer_timeout(long fallback) {
    const char *env = getenv("ONECARD_SSCARD_TIMEOUT_MS");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        long value = strtol(env, &end, 10);
        if (end != NULL && *end == '\0' && value > 0 && value <= 3600000L) {
            return value;
        }
    }
    return fallback;
}

/* Wait until fd is ready for events or the deadline passes: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, long deadline) {
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        struct pollfd pfd = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&pfd, 1, (int)left);
        if (n > 0) {
            return 1;
        }
        if (n == 0) {
            return 0;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

/* A connected socket, or -1: never blocks longer than CONNECT_TIMEOUT_MS. */
static int open_service(const char *path) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        return fd;
    }
    if (errno == EINPROGRESS || errno == EAGAIN) {
        /* A full backlog: wait for room, bounded. */
        if (wait_fd(fd, POLLOUT, now_ms() + CONNECT_TIMEOUT_MS) == 1) {
            int error = 0;
            socklen_t len = sizeof error;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0) {
                return fd;
            }
        }
    }
    close(fd);
    return -1;
}

static int send_all(int fd, const char *data, size_t size, long deadline) {
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            size -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 1) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

/* One answer line into line (NUL-terminated, LF removed): length, -1 on error, -2 on
 * timeout, -3 when the line is too long or the service closed before the LF. */
static long read_line(int fd, char *line, size_t size, long deadline) {
    size_t used = 0;
    for (;;) {
        int ready = wait_fd(fd, POLLIN, deadline);
        if (ready == 0) {
            return -2;
        }
        if (ready < 0) {
            return -1;
        }
        ssize_t n = recv(fd, line + used, size - 1 - used, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            return -3;
        }
        used += (size_t)n;
        char *lf = memchr(line, '\n', used);
        if (lf != NULL) {
            *lf = '\0';
            return (long)(lf - line);
        }
        if (used >= size - 1) {
            return -3;
        }
    }
}

/* "0" or "-N" (N without a leading zero, at most 7 digits), then a space. */
static int parse_code(const char *line, long *code, const char **text) {
    const char *p = line;
    if (p[0] == '0' && p[1] == ' ') {
        *code = 0;
        *text = p + 2;
        return 0;
    }
    if (p[0] != '-' || p[1] < '1' || p[1] > '9') {
        return -1;
    }
    long value = 0;
    int digits = 0;
    for (p = line + 1; *p >= '0' && *p <= '9'; p++) {
        if (++digits > 7) {
            return -1;
        }
        value = value * 10 + (*p - '0');
    }
    if (*p != ' ') {
        return -1;
    }
    *code = -value;
    *text = p + 1;
    return 0;
}

/* Ask the service: function (and its argument) in, code and text (into out) back. */
static long call(const char *function, const char *argument, char *out, long timeout_ms) {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int utf8 = 0;
    settings(path, sizeof path, &utf8);

    char request[MAX_REQUEST];
    int length = snprintf(request, sizeof request, "SSCARD/1 %s %s%s%s\n", utf8 ? "UTF-8" : "GBK",
                          function, argument[0] != '\0' ? " " : "", argument);
    if (length < 0 || (size_t)length >= sizeof request) {
        return fail(out, SSCARD_E_PARAMETER, "bad_parameter: request too long");
    }

    int fd = open_service(path);
    if (fd < 0) {
        return fail(out, SSCARD_E_READER_CONNECTION,
                    "reader_connection: the onecard counter service is not running");
    }
    long deadline = now_ms() + answer_timeout(timeout_ms);
    char line[MAX_ANSWER + 1];
    long got = -1;
    if (send_all(fd, request, (size_t)length, deadline) == 0) {
        got = read_line(fd, line, sizeof line, deadline);
    }
    close(fd);
    if (got == -2) {
        return fail(out, SSCARD_E_READER_CONNECTION,
                    "reader_connection: the onecard counter service did not answer in time");
    }
    if (got == -1) {
        return fail(out, SSCARD_E_READER_CONNECTION,
                    "reader_connection: the connection to the counter service failed");
    }
    long code = 0;
    const char *text = NULL;
    if (got < 0 || parse_code(line, &code, &text) != 0) {
        return fail(out, SSCARD_E_BAD_ANSWER, "bad_answer: not an SSCARD/1 answer");
    }
    size_t text_length = strlen(text);
    if (text_length >= SSCARD_OUT_SIZE) {
        return fail(out, SSCARD_E_BAD_ANSWER, "bad_answer: longer than the output buffer");
    }
    memcpy(out, text, text_length + 1);
    return code;
}

static int valid_type(int iType) {
    return iType >= SSCARD_TYPE_CONTACT && iType <= SSCARD_TYPE_AUTO_CONTACTLESS_FIRST;
}

static long typed_call(const char *function, int iType, char *pOutInfo, long timeout_ms) {
    if (pOutInfo == NULL) {
        return SSCARD_E_PARAMETER;
    }
    if (!valid_type(iType)) {
        return fail(pOutInfo, SSCARD_E_PARAMETER, "bad_parameter: iType must be 1, 2, 3 or 4");
    }
    char argument[2] = {(char)('0' + iType), '\0'};
    return call(function, argument, pOutInfo, timeout_ms);
}

EXPORT long SSCARD_CALL iReadCardBas(int iType, char *pOutInfo) {
    return typed_call("READ", iType, pOutInfo, READ_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iReadCardBas_HSM_Step1(int iType, char *pOutInfo) {
    return typed_call("HSM1", iType, pOutInfo, READ_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iReadCardBas_HSM_Step2(char *pKey, char *pOutInfo) {
    if (pOutInfo == NULL) {
        return SSCARD_E_PARAMETER;
    }
    const char *key = pKey != NULL ? pKey : "";
    size_t length = strnlen(key, MAX_KEY + 1);
    if (length > MAX_KEY) {
        return fail(pOutInfo, SSCARD_E_PARAMETER, "bad_parameter: pKey too long");
    }
    for (size_t i = 0; i < length; i++) {
        if (key[i] <= ' ' || key[i] > '~') {
            return fail(pOutInfo, SSCARD_E_PARAMETER, "bad_parameter: pKey must be printable");
        }
    }
    return call("HSM2", key, pOutInfo, READ_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iVerifyPIN(int iType, char *pOutInfo) {
    return typed_call("VERIFYPIN", iType, pOutInfo, PIN_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iChangePIN(int iType, char *pOutInfo) {
    return typed_call("CHANGEPIN", iType, pOutInfo, PIN_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iGetReaderInfo(char *pOutInfo) {
    if (pOutInfo == NULL) {
        return SSCARD_E_PARAMETER;
    }
    return call("PING", "", pOutInfo, READ_TIMEOUT_MS);
}

EXPORT long SSCARD_CALL iGetVersion(char *pOutInfo) {
    if (pOutInfo == NULL) {
        return SSCARD_E_PARAMETER;
    }
    snprintf(pOutInfo, SSCARD_OUT_SIZE, "%s", VERSION);
    return SSCARD_OK;
}

EXPORT long SSCARD_CALL iSSCardInit(const char *pSocketPath, int iEncoding) {
    if (iEncoding < SSCARD_ENCODING_DEFAULT || iEncoding > SSCARD_ENCODING_UTF8) {
        return SSCARD_E_PARAMETER;
    }
    if (pSocketPath != NULL && strlen(pSocketPath) >= sizeof config_socket) {
        return SSCARD_E_PARAMETER;
    }
    pthread_mutex_lock(&config_lock);
    snprintf(config_socket, sizeof config_socket, "%s", pSocketPath != NULL ? pSocketPath : "");
    config_encoding = iEncoding;
    pthread_mutex_unlock(&config_lock);
    return SSCARD_OK;
}
