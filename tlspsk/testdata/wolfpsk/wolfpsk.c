/*
 * wolfpsk: a TLS 1.2 / DTLS 1.2 PSK peer on wolfSSL, for tlspsk's interop
 * tests (wolfssl_test.go compiles and runs it). wolfSSL is the library on
 * Debian that implements TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256 (RFC 8442);
 * OpenSSL 3.0 and GnuTLS 3.7 do not.
 *
 * usage: wolfpsk client|server tls|dtls HOST PORT CIPHER PSK_HEX IDENTITY HINT
 *
 * A server binds HOST:PORT (PORT 0: any free port), prints "listening on
 * PORT" to stderr and serves one peer; a client connects to HOST:PORT.
 * After the handshake it prints "cipher NAME" (and a client "hint HINT") to
 * stderr, then sends each read() from stdin as one record and copies each
 * record it receives to stdout, until the peer closes (exit 0; the end of
 * stdin only stops the sending) or an error (a line on stderr, exit 1; after a
 * fatal alert from the peer also "fatal alert received: CODE"). stdout
 * carries application data only.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char psk[64];
static unsigned int pskLen;
static const char *identity;

static unsigned int clientPSK(WOLFSSL *ssl, const char *hint, char *id,
                              unsigned int idMax, unsigned char *key,
                              unsigned int keyMax) {
    (void)ssl;
    fprintf(stderr, "hint %s\n", hint ? hint : "");
    if (strlen(identity) + 1 > idMax || pskLen > keyMax)
        return 0;
    strcpy(id, identity);
    memcpy(key, psk, pskLen);
    return pskLen;
}

static unsigned int serverPSK(WOLFSSL *ssl, const char *id, unsigned char *key,
                              unsigned int keyMax) {
    (void)ssl;
    if (id == NULL || strcmp(id, identity) != 0) {
        fprintf(stderr, "unknown identity %s\n", id ? id : "(none)");
        return 0;
    }
    if (pskLen > keyMax)
        return 0;
    memcpy(key, psk, pskLen);
    return pskLen;
}

static void fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(2);
}

static void failSSL(WOLFSSL *ssl, int ret, const char *what) {
    char msg[WOLFSSL_MAX_ERROR_SZ];
    int err = wolfSSL_get_error(ssl, ret);
    fprintf(stderr, "%s: error %d: %s\n", what, err,
            wolfSSL_ERR_error_string((unsigned long)err, msg));
    /* The alert's code (RFC 8446 B.2 numbering) lets a test check which
     * alert the peer sent, not only that one came. */
    WOLFSSL_ALERT_HISTORY h;
    if (wolfSSL_get_alert_history(ssl, &h) == WOLFSSL_SUCCESS && h.last_rx.level == 2)
        fprintf(stderr, "fatal alert received: %d\n", h.last_rx.code);
    exit(1);
}

static int unhex(const char *s) {
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > sizeof psk)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned int b;
        if (sscanf(s + 2 * i, "%2x", &b) != 1)
            return -1;
        psk[i] = (unsigned char)b;
    }
    pskLen = (unsigned int)(n / 2);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: wolfpsk client|server tls|dtls HOST PORT "
                        "CIPHER PSK_HEX IDENTITY HINT\n");
        return 2;
    }
    int server = strcmp(argv[1], "server") == 0;
    int dtls = strcmp(argv[2], "dtls") == 0;
    const char *cipher = argv[5], *hint = argv[8];
    identity = argv[7];
    if (unhex(argv[6]) != 0) {
        fprintf(stderr, "PSK_HEX: not a hex key of at most 64 bytes\n");
        return 2;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[4]));
    if (inet_pton(AF_INET, argv[3], &sa.sin_addr) != 1) {
        fprintf(stderr, "HOST: not an IPv4 address: %s\n", argv[3]);
        return 2;
    }

    wolfSSL_Init();
    WOLFSSL_METHOD *method =
        dtls ? (server ? wolfDTLSv1_2_server_method() : wolfDTLSv1_2_client_method())
             : (server ? wolfTLSv1_2_server_method() : wolfTLSv1_2_client_method());
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(method);
    if (ctx == NULL) {
        fprintf(stderr, "wolfSSL_CTX_new failed\n");
        return 2;
    }
    if (wolfSSL_CTX_set_cipher_list(ctx, cipher) != WOLFSSL_SUCCESS) {
        fprintf(stderr, "CIPHER: wolfSSL does not support %s\n", cipher);
        return 2;
    }
    if (server) {
        wolfSSL_CTX_set_psk_server_callback(ctx, serverPSK);
        if (*hint)
            wolfSSL_CTX_use_psk_identity_hint(ctx, hint);
    } else {
        wolfSSL_CTX_set_psk_client_callback(ctx, clientPSK);
        /* P-256 only: wolfSSL 5.5.4 offers X25519 but fails TLS 1.2
         * ECDHE_PSK with it ("Bad ECC Peer Key"), against OpenSSL too. */
        if (wolfSSL_CTX_UseSupportedCurve(ctx, WOLFSSL_ECC_SECP256R1) != WOLFSSL_SUCCESS) {
            fprintf(stderr, "wolfSSL_CTX_UseSupportedCurve failed\n");
            return 2;
        }
    }

    int fd = socket(AF_INET, dtls ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (fd < 0)
        fail("socket");
    if (server) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            fail("bind");
        socklen_t sl = sizeof sa;
        if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
            fail("getsockname");
        if (!dtls && listen(fd, 1) != 0)
            fail("listen");
        fprintf(stderr, "listening on %d\n", ntohs(sa.sin_port));
        if (!dtls) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                fail("accept");
            close(fd);
            fd = c;
        } else {
            /* One peer: the sender of the first datagram, left queued. */
            char b;
            sl = sizeof sa;
            if (recvfrom(fd, &b, 1, MSG_PEEK, (struct sockaddr *)&sa, &sl) < 0)
                fail("recvfrom");
            if (connect(fd, (struct sockaddr *)&sa, sl) != 0)
                fail("connect");
        }
    } else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fail("connect");
    }

    WOLFSSL *ssl = wolfSSL_new(ctx);
    if (ssl == NULL) {
        fprintf(stderr, "wolfSSL_new failed\n");
        return 2;
    }
    if (dtls)
        wolfSSL_dtls_set_peer(ssl, &sa, sizeof sa);
    wolfSSL_set_fd(ssl, fd);
    int ret = server ? wolfSSL_accept(ssl) : wolfSSL_connect(ssl);
    if (ret != WOLFSSL_SUCCESS)
        failSSL(ssl, ret, "handshake");
    fprintf(stderr, "cipher %s\n", wolfSSL_get_cipher_name(ssl));

    static char buf[16384];
    struct pollfd pf[2] = {{0, POLLIN, 0}, {fd, POLLIN, 0}};
    for (;;) {
        if (wolfSSL_pending(ssl) == 0) {
            pf[0].revents = pf[1].revents = 0;
            if (poll(pf, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                fail("poll");
            }
        } else {
            pf[0].revents = 0;
            pf[1].revents = POLLIN;
        }
        if (pf[1].revents) {
            int n = wolfSSL_read(ssl, buf, sizeof buf);
            if (n > 0) {
                fwrite(buf, 1, (size_t)n, stdout);
                fflush(stdout);
            } else {
                int err = wolfSSL_get_error(ssl, n);
                if (err == WOLFSSL_ERROR_ZERO_RETURN || n == 0) {
                    fprintf(stderr, "peer closed\n");
                    return 0;
                }
                if (err != WOLFSSL_ERROR_WANT_READ)
                    failSSL(ssl, n, "read");
            }
        }
        if (pf[0].revents) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) {
                /* The end of stdin is not the end of the peer's data:
                 * read on until it closes. */
                pf[0].fd = -1;
                continue;
            }
            int w = wolfSSL_write(ssl, buf, (int)n);
            if (w != (int)n)
                failSSL(ssl, w, "write");
        }
    }
}
