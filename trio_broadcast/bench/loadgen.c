/*
 * loadgen.c: one worker of `trio-broadcast bench --driver c`, in place of a Python worker
 * process (trio_broadcast/bench/run.py, _Worker). It opens its share of subscribers,
 * publishers and stalled subscribers, publishes on the coordinator's command, checks what
 * subscribers receive and reports the same counters a Python worker reports.
 *
 * Built by trio_broadcast/bench/loadgen.py (`cc -O2`, cached by the source's hash); C11, Linux,
 * no library beyond libc. Single-threaded: one epoll loop over every socket and stdin, level-
 * triggered, nonblocking sockets, CLOCK_MONOTONIC for every time it reads.
 *
 * The line protocol (one JSON object per line; also in loadgen.py's docstring)
 * ---------------------------------------------------------------------------
 * coordinator -> loadgen, on stdin:
 *   1. the spec, a flat object: {"index", "address" (numeric IP), "port", "request" (the
 *      upgrade request, bytes as a string: wire.frames.upgrade_request), "run_id",
 *      "subscribers", "publishers" (list of publisher numbers), "stalled", "rate" (messages/s
 *      per publisher, or null: max mode), "window", "size", "total_publishers", "duration",
 *      "drain_timeout", "connect_timeout"}; times in seconds.
 *   2. {"cmd": "start", "t0_ns": N}                  publish from CLOCK_MONOTONIC N, duration s
 *   3. {"cmd": "drain", "target_seq": N|null, "drain_timeout": S}
 *   Any other command, or end of input before the drain, stops the worker: it reports and exits.
 * loadgen -> coordinator, on stdout:
 *   {"kind": "progress", "connected", "sent", "acked", "delivered", "evicted", "errors"}  1/s
 *   {"kind": "connected", "connected": N, "wall_s": S}   every connection got its welcome or failed
 *   {"kind": "published", "last_seq", "complete_until", "acked"}    every publisher is done
 *   {"kind": "drained"}                          subscribers reached the target (or timed out)
 *   {"kind": "result", ...}   the fields of run.WorkerResult; "latency" maps histogram buckets
 *                             (trio_broadcast/histogram.py, microseconds) to counts
 * Exit status 0 after "result"; 2 when the spec cannot be read (one line on stderr).
 *
 * What it parses, and why that is enough
 * --------------------------------------
 * The server encodes every event with "type" first ({"type":"message","seq":42,"message":
 * "...",...}) and a batch as {"type":"batch","events":[event,event,...]}. Inside a JSON string
 * every '"' is escaped, so the byte strings {"type":", "seq": and "message":" occur in a frame
 * only as the keys themselves: a batch is split into events at each {"type":", and an event's
 * seq and message are found by searching for their keys. A message of this run starts with
 * RUN_ID:SEND_NS: (written by the publishers here and by the Python bench's alike).
 *
 * Latency: a publisher reads CLOCK_MONOTONIC right before it writes the frame and puts it in the
 * text; a subscriber reads the clock right after the read(2) that brought the frame. Seq
 * continuity is checked message by message: a seq not one above the previous one is a gap
 * (seqs skipped: missing) or, if not above it, a duplicate (not counted as delivered).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define CONNECT_CONCURRENCY 100            /* handshakes in flight, as run.CONNECT_CONCURRENCY */
#define READ_BYTES (256 * 1024)            /* bytes asked of one read(2) */
#define MAX_EVENTS 512                     /* epoll events per wakeup */
#define HIST_BUCKETS (64 << 8)             /* every bucket a 64-bit value can fall in */
#define PROGRESS_NS NS_PER_S               /* between progress lines */
#define SLICE_NS (50 * NS_PER_MS)          /* timeout checks while connecting, stalled reads */
#define STALLED_IDLE_NS (NS_PER_S / 2)     /* a stalled subscriber quiet this long: not evicted */
#define STALLED_READ_NS (10 * NS_PER_S)    /* at most this long reading what piled up */
#define STALLED_WAIT_NS (12 * NS_PER_S)    /* at most this long for every stalled subscriber */
#define MAX_HEADER_BYTES (64 * 1024)       /* a longer handshake answer fails */
#define TALLY_KINDS 64                     /* error kinds and close codes told apart */

/* -- small helpers ------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void *must(void *pointer) {
    if (pointer == NULL) {
        fputs("loadgen: out of memory\n", stderr);
        exit(1);
    }
    return pointer;
}

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    b->data = must(realloc(b->data, cap));
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *data, size_t n) {
    if (n == 0) return;  /* b->data may still be NULL */
    buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *format, ...) {
    for (;;) {
        va_list args;
        va_start(args, format);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, format, args);
        va_end(args);
        if (n >= 0 && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        buf_reserve(b, (size_t)(n < 0 ? 256 : n + 1));
    }
}

static int64_t clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * NS_PER_S + t.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static bool starts(const char *p, const char *end, const char *prefix, size_t n) {
    return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}

static const char *find(const char *p, const char *end, const char *needle, size_t n) {
    return p < end ? memmem(p, (size_t)(end - p), needle, n) : NULL;
}

/* Digits at p (an optional '-' first), up to end; *ok false when there are none. */
static int64_t parse_int(const char *p, const char *end, bool *ok) {
    bool negative = p < end && *p == '-';
    if (negative) p++;
    int64_t value = 0;
    const char *first = p;
    while (p < end && *p >= '0' && *p <= '9') value = value * 10 + (*p++ - '0');
    *ok = p > first;
    return negative ? -value : value;
}

/* The histogram bucket of trio_broadcast/histogram.py's bucket_of: exact below 256, then the
   top 8 bits of the value and its bit length. */
static int bucket_of(int64_t value) {
    if (value < 256) return value < 0 ? 0 : (int)value;
    int bits = 0;
    for (uint64_t rest = (uint64_t)value; rest; rest >>= 1) bits++;
    int shift = bits - 8;
    return (shift << 8) | (int)(value >> shift);
}

/* -- the spec: a flat JSON object ------------------------------------------------------------ */

/* The value after "key": in a flat JSON object, or NULL. */
static const char *json_field(const char *object, const char *key) {
    char needle[80];
    int n = snprintf(needle, sizeof needle, "\"%s\"", key);
    for (const char *p = object; (p = strstr(p, needle)) != NULL;) {
        p += n;
        while (*p == ' ') p++;
        if (*p != ':') continue;
        p++;
        while (*p == ' ') p++;
        return p;
    }
    return NULL;
}

static bool json_null(const char *value) { return value == NULL || strncmp(value, "null", 4) == 0; }

static bool json_int(const char *object, const char *key, int64_t *out) {
    const char *value = json_field(object, key);
    if (json_null(value)) return false;
    char *end;
    errno = 0;
    long long parsed = strtoll(value, &end, 10);
    if (end == value || errno != 0 || *end == '.' || *end == 'e' || *end == 'E') return false;
    *out = parsed;
    return true;
}

static bool json_number(const char *object, const char *key, double *out) {
    const char *value = json_field(object, key);
    if (json_null(value)) return false;
    char *end;
    double parsed = strtod(value, &end);
    if (end == value) return false;
    *out = parsed;
    return true;
}

/* A string value, unescaped (ASCII escapes only), malloc'd; NULL when absent or malformed. */
static char *json_string(const char *object, const char *key, size_t *length) {
    const char *p = json_field(object, key);
    if (p == NULL || *p != '"') return NULL;
    buf_t out = {0};
    for (p++; *p != '"'; p++) {
        char c = *p;
        if (c == '\0') return NULL;
        if (c == '\\') {
            switch (*++p) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case '"': case '\\': case '/': c = *p; break;
            case 'u': {
                char hex[5] = {0};
                for (int i = 0; i < 4; i++)
                    if ((hex[i] = *++p) == '\0') return NULL;
                long code = strtol(hex, NULL, 16);
                if (code <= 0 || code > 0x7f) return NULL;
                c = (char)code;
                break;
            }
            default: return NULL;
            }
        }
        buf_add(&out, &c, 1);
    }
    *length = out.len;
    buf_add(&out, "", 1);
    return out.data;
}

/* A list of integers, malloc'd (NULL when empty or absent). */
static int64_t *json_int_list(const char *object, const char *key, int *count) {
    const char *p = json_field(object, key);
    *count = 0;
    if (p == NULL || *p != '[') return NULL;
    int64_t *items = NULL;
    for (p++;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ']' || *p == '\0') break;
        char *end;
        long long item = strtoll(p, &end, 10);
        if (end == p) break;
        items = must(realloc(items, sizeof *items * (size_t)(*count + 1)));
        items[(*count)++] = item;
        p = end;
    }
    return items;
}

static struct {
    int index;
    struct sockaddr_storage address;
    socklen_t address_len;
    char *request;          /* the upgrade request, sent as is */
    size_t request_len;
    char prefix[80];        /* "RUN_ID:": starts every message of this run */
    size_t prefix_len;
    int subscribers, stalled, publishers, total_publishers, window, size;
    int64_t *numbers;       /* the publishers' global numbers */
    double rate;            /* per publisher; 0: max mode */
    double duration, drain_timeout, connect_timeout;  /* seconds */
} spec;

static void bad_spec(const char *what) {
    fprintf(stderr, "loadgen: the spec line is missing or has a bad %s\n", what);
    exit(2);
}

static void read_spec(const char *line) {
    int64_t value;
    double number;
    if (!json_int(line, "index", &value)) bad_spec("index");
    spec.index = (int)value;
    size_t length;
    char *address = json_string(line, "address", &length);
    if (address == NULL) bad_spec("address");
    if (!json_int(line, "port", &value) || value <= 0 || value > 65535) bad_spec("port");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&spec.address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&spec.address;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)value);
        spec.address_len = sizeof *v4;
    } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)value);
        spec.address_len = sizeof *v6;
    } else {
        bad_spec("address (a numeric IPv4 or IPv6 address)");
    }
    free(address);
    spec.request = json_string(line, "request", &spec.request_len);
    if (spec.request == NULL) bad_spec("request");
    char *run_id = json_string(line, "run_id", &length);
    if (run_id == NULL || length + 2 > sizeof spec.prefix) bad_spec("run_id");
    spec.prefix_len = (size_t)snprintf(spec.prefix, sizeof spec.prefix, "%s:", run_id);
    free(run_id);
    if (!json_int(line, "subscribers", &value) || value < 0) bad_spec("subscribers");
    spec.subscribers = (int)value;
    if (!json_int(line, "stalled", &value) || value < 0) bad_spec("stalled");
    spec.stalled = (int)value;
    spec.numbers = json_int_list(line, "publishers", &spec.publishers);
    if (!json_int(line, "total_publishers", &value)) bad_spec("total_publishers");
    spec.total_publishers = (int)value;
    if (!json_int(line, "window", &value) || value < 0) bad_spec("window");
    spec.window = (int)value;
    if (!json_int(line, "size", &value) || value < 0 || value > (1 << 26)) bad_spec("size");
    spec.size = (int)value;
    spec.rate = json_number(line, "rate", &number) ? number : 0.0;
    if (spec.rate < 0) bad_spec("rate");
    if (!json_number(line, "duration", &spec.duration)) bad_spec("duration");
    if (!json_number(line, "drain_timeout", &spec.drain_timeout)) bad_spec("drain_timeout");
    if (!json_number(line, "connect_timeout", &spec.connect_timeout)) bad_spec("connect_timeout");
}

/* -- what is measured (run.WorkerResult) ----------------------------------------------------- */

typedef struct {
    char name[96];
    int64_t count;
} tally_t;

static struct {
    buf_t connect_ms;       /* doubles: handshake + welcome, per connection */
    double connect_wall_s;
    int64_t connect_failed, sent, acked, expected_messages;
    int64_t first_seq, last_seq;   /* -1: none yet */
    int64_t delivered, frames, events, gaps, missing, duplicates;
    int64_t evicted, stalled_evicted, stalled_dropped;
    tally_t closes[TALLY_KINDS], errors[TALLY_KINDS];  /* unexpected closes; errors by kind */
    int n_closes, n_errors;
    int64_t latency[HIST_BUCKETS];  /* counts per histogram bucket (µs) */
    int64_t last_receive_ns;
    double publish_lag_ms, cpu_s;
} result = {.first_seq = -1, .last_seq = -1};

static int64_t error_total;

/* Count one `name` in `table`; once it is nearly full, new names are counted as "other". */
static void tally(tally_t *table, int *count, const char *name) {
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < *count; i++) {
            if (strcmp(table[i].name, name) == 0) {
                table[i].count++;
                return;
            }
        }
        if (*count < TALLY_KINDS - 1) break;  /* room for a new name */
        name = "other";                       /* the last slot takes the rest */
    }
    snprintf(table[*count].name, sizeof table[*count].name, "%s", name);
    table[(*count)++].count = 1;
}

static void count_error(const char *format, ...) {
    char name[96];
    va_list args;
    va_start(args, format);
    vsnprintf(name, sizeof name, format, args);
    va_end(args);
    for (char *c = name; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '?';  /* JSON-safe */
    tally(result.errors, &result.n_errors, name);
    error_total++;
}

/* -- connections ------------------------------------------------------------------------------ */

enum role { SUBSCRIBER, PUBLISHER, STALLED };
enum state { QUEUED, CONNECTING, HANDSHAKE, WELCOME, OPEN, ENDED };

struct conn {
    int fd;
    enum role role;
    enum state state;
    uint32_t events;        /* registered with epoll; 0: not registered */
    int64_t started_ns;     /* connect began */
    buf_t tail;             /* received, not parsed yet */
    buf_t fragments;        /* a fragmented message in progress */
    bool fragmented;
    buf_t out;              /* to write once the socket takes it */
    size_t out_sent;        /* of out */
    int close_code;         /* the server's close frame; 0: none yet */
    /* subscriber */
    int64_t last;           /* the last seq seen; -1: none */
    bool gone, behind, unwatched;
    /* publisher */
    int number;             /* global publisher number */
    int64_t sent, answered, last_acked, next_ns, drain_deadline;
    bool sending_done, finished;
    /* stalled */
    bool fate_done;
    int64_t idle_deadline;
};

enum phase { CONNECT, READY, WAIT_T0, PUBLISH, PUBLISHED, DRAIN, FATE };

static struct {
    enum phase phase;
    struct conn *conns;
    struct conn **pubs, **stalls;  /* the publishers and the stalled subscribers among conns */
    int n_conns, next_queued, in_flight, pending, connected;
    bool starting, finishing;
    int epoll;
    buf_t stdin_buf;
    bool drain_received;
    int64_t connect_started_ns, next_progress_ns, next_timeouts_ns;
    int64_t t0_ns, end_ns, interval_ns, cpu_start_ns;
    int publishers_left;
    int64_t complete_until;  /* -1: none */
    buf_t acked_seqs;        /* int64_t: seqs of this worker's acked messages */
    bool target_set;
    int64_t target;
    int behind;
    int64_t drain_deadline;
    int stalled_left;
    int64_t fate_read_end, fate_end;
    char *rbuf;              /* one read buffer for every socket */
    size_t rbuf_cap;
    buf_t scratch;           /* one outgoing publish frame */
} w = {.complete_until = -1};

static void emit(buf_t *line) {
    buf_add(line, "\n", 1);
    for (size_t done = 0; done < line->len;) {
        ssize_t n = write(STDOUT_FILENO, line->data + done, line->len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  /* the coordinator is gone: nothing to tell */
        done += (size_t)n;
    }
    line->len = 0;
}

static void conn_update(struct conn *c);
static void conn_ended(struct conn *c, int code);
static void pub_finish(struct conn *c);
static void pub_pump(struct conn *c);
static void finish(void);

static void conn_close(struct conn *c) {
    if (c->state == ENDED) return;
    if (c->fd >= 0) close(c->fd);  /* leaves the epoll set with it */
    c->fd = -1;
    c->events = 0;
    c->state = ENDED;
}

/* Write now what the socket takes, keep the rest for EPOLLOUT. A write error ends the
   connection (callers check c->state). */
static void conn_send(struct conn *c, const void *data, size_t n) {
    if (c->state == ENDED) return;
    if (c->out.len == c->out_sent) {
        ssize_t written = send(c->fd, data, n, MSG_NOSIGNAL);
        if (written < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_ended(c, c->close_code ? c->close_code : 1006);
                return;
            }
            written = 0;
        }
        if ((size_t)written == n) return;
        c->out.len = c->out_sent = 0;
        data = (const char *)data + written;
        n -= (size_t)written;
    }
    buf_add(&c->out, data, n);
    conn_update(c);
}

static void conn_flush(struct conn *c) {
    while (c->out_sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            conn_ended(c, c->close_code ? c->close_code : 1006);
            return;
        }
        c->out_sent += (size_t)n;
    }
    if (c->out_sent == c->out.len) c->out.len = c->out_sent = 0;
    conn_update(c);
}

/* A client frame, masked with the all-zero key (the payload goes as is), as the Python bench. */
static size_t client_header(unsigned char *header, int opcode, size_t n) {
    size_t i;
    header[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        header[1] = (unsigned char)(0x80 | n);
        i = 2;
    } else if (n < 65536) {
        header[1] = 0x80 | 126;
        header[2] = (unsigned char)(n >> 8);
        header[3] = (unsigned char)n;
        i = 4;
    } else {
        header[1] = 0x80 | 127;
        for (int k = 0; k < 8; k++) header[2 + k] = (unsigned char)((uint64_t)n >> (56 - 8 * k));
        i = 10;
    }
    memset(header + i, 0, 4);
    return i + 4;
}

static void send_control(struct conn *c, int opcode, const char *payload, size_t n) {
    unsigned char frame[14 + 125];
    size_t header = client_header(frame, opcode, n);
    memcpy(frame + header, payload, n);
    conn_send(c, frame, header + n);
}

/* Close politely: a close frame (1000) unless the server closed first or a frame is half
   written, best effort and without waiting, then the socket. */
static void conn_goodbye(struct conn *c) {
    if (c->state == ENDED) return;
    if (c->close_code == 0 && c->state == OPEN && c->out_sent == c->out.len) {
        static const unsigned char frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
        (void)!send(c->fd, frame, sizeof frame, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    conn_close(c);
}

/* Which events a connection waits for, given its state and the run's phase. */
static void conn_update(struct conn *c) {
    if (c->state == ENDED) return;
    uint32_t want = 0;
    if (c->state == CONNECTING) {
        want = EPOLLOUT;
    } else {
        bool reading = true;
        if (c->role == STALLED && c->state == OPEN && (w.phase != FATE || c->fate_done))
            reading = false;  /* a stalled subscriber never reads until the run is over */
        if (c->role == SUBSCRIBER && c->unwatched) reading = false;
        if (reading) want |= EPOLLIN;
        if (c->out_sent < c->out.len) want |= EPOLLOUT;
    }
    if (want == c->events) return;
    struct epoll_event event = {.events = want, .data.ptr = c};
    int op = want == 0 ? EPOLL_CTL_DEL : c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(w.epoll, op, c->fd, &event) != 0) {
        perror("loadgen: epoll_ctl");
        exit(1);
    }
    c->events = want;
}

/* -- connecting ------------------------------------------------------------------------------ */

static void report_connected(void) {
    buf_t line = {0};
    w.phase = READY;
    result.connect_wall_s = (double)(now_ns() - w.connect_started_ns) / NS_PER_S;
    buf_printf(&line, "{\"kind\":\"connected\",\"connected\":%d,\"wall_s\":%.6f}", w.connected,
               result.connect_wall_s);
    emit(&line);
    free(line.data);
}

static void start_connects(void);

/* A connection got its welcome (error NULL) or failed to. */
static void connect_done(struct conn *c, const char *error) {
    w.in_flight--;
    w.pending--;
    if (error == NULL) {
        double ms = (double)(now_ns() - c->started_ns) / NS_PER_MS;
        buf_add(&result.connect_ms, &ms, sizeof ms);
        w.connected++;
        c->state = OPEN;
        conn_update(c);
    } else {
        result.connect_failed++;
        count_error("%s: %s", c->role == PUBLISHER ? "publisher" : "connect", error);
        conn_close(c);
        if (c->role == SUBSCRIBER) c->gone = true;
        if (c->role == PUBLISHER) pub_finish(c);
        if (c->role == STALLED) w.stalled_left--;
    }
    start_connects();
    if (w.pending == 0 && w.phase == CONNECT) report_connected();
}

static void start_connects(void) {
    if (w.starting) return;  /* connect_done calls back here */
    w.starting = true;
    while (w.in_flight < CONNECT_CONCURRENCY && w.next_queued < w.n_conns) {
        struct conn *c = &w.conns[w.next_queued++];
        w.in_flight++;
        c->started_ns = now_ns();
        c->fd = socket(spec.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        c->state = CONNECTING;
        if (c->fd < 0) {
            connect_done(c, "OSError");
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* as trio's streams */
        if (connect(c->fd, (struct sockaddr *)&spec.address, spec.address_len) != 0 &&
            errno != EINPROGRESS) {
            connect_done(c, "OSError");
            continue;
        }
        conn_update(c);
    }
    w.starting = false;
}

static void check_connect_timeouts(int64_t now) {
    int64_t limit = (int64_t)(spec.connect_timeout * NS_PER_S);
    for (int i = 0; i < w.next_queued; i++) {
        struct conn *c = &w.conns[i];
        if (c->state >= CONNECTING && c->state <= WELCOME && now - c->started_ns >= limit)
            connect_done(c, "TooSlowError");
    }
}

/* -- subscribers ----------------------------------------------------------------------------- */

typedef void (*event_fn)(struct conn *c, const char *type, const char *end, int64_t now);

/* Each event of a frame: the frame itself, or every event of a batch. `type` points at the
   event's type value (after "type":"), `end` at the end of the event. */
static void each_event(struct conn *c, const char *p, size_t n, int64_t now, event_fn fn) {
    static const char open[] = "{\"type\":\"";
    const char *end = p + n;
    if (starts(p, end, "{\"type\":\"batch\"", 15)) {
        for (const char *event = find(p + 15, end, open, 9); event != NULL;) {
            const char *type = event + 9;
            const char *next = find(type, end, open, 9);
            fn(c, type, next ? next : end, now);
            event = next;
        }
        return;
    }
    const char *type = find(p, end, "\"type\":\"", 8);
    fn(c, type ? type + 8 : end, end, now);
}

static void arrived(struct conn *c) {
    if (c->behind) {
        c->behind = false;
        w.behind--;
    }
}

static void sub_event(struct conn *c, const char *type, const char *end, int64_t now) {
    result.events++;
    if (!starts(type, end, "message\"", 8)) return;
    const char *key = find(type, end, "\"seq\":", 6);
    bool ok;
    int64_t seq = key ? parse_int(key + 6, end, &ok) : 0;
    if (key == NULL || !ok) {
        count_error("unreadable message frame");
        return;
    }
    int64_t sent_ns = -1;
    const char *text = find(type, end, "\"message\":\"", 11);
    if (text != NULL && starts(text + 11, end, spec.prefix, spec.prefix_len)) {
        const char *stamp = text + 11 + spec.prefix_len;
        int64_t value = parse_int(stamp, end, &ok);
        if (ok) sent_ns = value;
    }
    int64_t last = c->last;
    if (last >= 0 && seq != last + 1) {
        if (seq <= last) {
            result.duplicates++;
            return;
        }
        result.gaps++;
        result.missing += seq - last - 1;
    }
    c->last = seq;
    if (sent_ns >= 0) {
        int64_t us = now - sent_ns;
        us = us >= 0 ? us / 1000 : -1;
        result.latency[bucket_of(us)]++;
        result.delivered++;
        result.last_receive_ns = now;
    }
}

/* -- publishers ------------------------------------------------------------------------------ */

static void check_published(void) {
    if (w.phase != PUBLISH || w.publishers_left > 0 || w.finishing) return;
    buf_t line = {0};
    w.phase = PUBLISHED;
    buf_printf(&line, "{\"kind\":\"published\",\"last_seq\":");
    buf_printf(&line, result.last_seq < 0 ? "null" : "%" PRId64, result.last_seq);
    buf_printf(&line, ",\"complete_until\":");
    buf_printf(&line, w.complete_until < 0 ? "null" : "%" PRId64, w.complete_until);
    buf_printf(&line, ",\"acked\":%" PRId64 "}", result.acked);
    emit(&line);
    free(line.data);
}

/* A publisher is done: every message answered, its drain timeout over, or its connection gone. */
static void pub_finish(struct conn *c) {
    if (c->finished) return;
    c->finished = true;
    if (c->sending_done && c->answered < c->sent && c->last_acked >= 0) {
        /* Acks come in order: up to its last ack every message was accepted, the ones after
           are unknown. The drain target must not go past this (run._publisher_finished). */
        if (w.complete_until < 0 || c->last_acked < w.complete_until)
            w.complete_until = c->last_acked;
    }
    w.publishers_left--;
    conn_goodbye(c);
    check_published();
}

static void sending_done(struct conn *c, int64_t now) {
    c->sending_done = true;
    c->drain_deadline = now + (int64_t)(spec.drain_timeout * NS_PER_S);
    if (c->answered >= c->sent) pub_finish(c);
}

static void answer(struct conn *c) {
    c->answered++;
    if (c->sending_done) {
        if (c->answered >= c->sent) pub_finish(c);
    } else if (spec.rate == 0) {
        pub_pump(c);
    }
}

static void pub_event(struct conn *c, const char *type, const char *end, int64_t now) {
    (void)now;
    if (c->state == ENDED) return;
    if (starts(type, end, "ack\"", 4)) {
        const char *key = find(type, end, "\"seq\":", 6);
        bool ok;
        int64_t seq = key ? parse_int(key + 6, end, &ok) : 0;
        if (key == NULL || !ok) {
            count_error("unreadable ack");
            return;
        }
        result.acked++;
        c->last_acked = seq;
        buf_add(&w.acked_seqs, &seq, sizeof seq);
        if (result.first_seq < 0 || seq < result.first_seq) result.first_seq = seq;
        if (seq > result.last_seq) result.last_seq = seq;
        answer(c);
    } else if (starts(type, end, "error\"", 6)) {
        const char *key = find(type, end, "\"code\":\"", 8);
        const char *code = key ? key + 8 : end;
        const char *close = find(code, end, "\"", 1);
        int length = close ? (int)(close - code) : 0;
        count_error("refused: %.*s", length > 60 ? 60 : length, code);
        answer(c);
    }
}

/* Publish one message: the clock is read right before the write, and written into the text. */
static void pub_send(struct conn *c) {
    buf_t *s = &w.scratch;
    s->len = 0;
    buf_reserve(s, 14 + 32 + spec.prefix_len + 64 + (size_t)spec.size);
    char *payload = s->data + 14;
    int64_t stamp = now_ns();
    int n = sprintf(payload, "{\"message\":\"%s%" PRId64 ":%d:%" PRId64 ":", spec.prefix, stamp,
                    c->number, c->sent);
    int text = n - 12;
    if (text < spec.size) {
        memset(payload + n, 'x', (size_t)(spec.size - text));
        n += spec.size - text;
    }
    payload[n++] = '"';
    payload[n++] = '}';
    unsigned char header[14];
    size_t h = client_header(header, 0x1, (size_t)n);
    memcpy(payload - h, header, h);
    conn_send(c, payload - h, h + (size_t)n);
    if (c->state == ENDED) return;  /* conn_ended counted it as closed */
    c->sent++;
    result.sent++;
}

/* Send what the window (max mode) or the schedule (rate mode) allows, while the socket takes it.
   Open loop in rate mode: a publisher behind its schedule sends back to back to catch up. */
static void pub_pump(struct conn *c) {
    if (w.phase != PUBLISH || c->state != OPEN || c->sending_done) return;
    while (c->out_sent == c->out.len) {  /* nothing waiting for the socket */
        int64_t now = now_ns();
        if (now >= w.end_ns) {
            sending_done(c, now);
            return;
        }
        if (spec.rate == 0) {
            if (c->sent - c->answered >= spec.window) return;
        } else {
            if (now < c->next_ns) return;
            double lag_ms = (double)(now - c->next_ns) / NS_PER_MS;
            if (lag_ms > result.publish_lag_ms) result.publish_lag_ms = lag_ms;
            c->next_ns += w.interval_ns;
        }
        pub_send(c);
        if (c->state != OPEN) return;
    }
}

static void start_publishing(int64_t now) {
    w.phase = PUBLISH;
    w.end_ns = w.t0_ns + (int64_t)(spec.duration * NS_PER_S);
    w.interval_ns = spec.rate > 0 ? (int64_t)(1e9 / spec.rate) : 0;
    int64_t spread = spec.total_publishers > 0 ? spec.total_publishers : 1;
    for (int i = 0; i < spec.publishers; i++) {
        struct conn *c = w.pubs[i];
        c->next_ns = w.t0_ns + (c->number * w.interval_ns) / spread;
        pub_pump(c);  /* one whose connection failed or ended is finished already */
    }
    (void)now;
    check_published();
}

/* -- reading ----------------------------------------------------------------------------------- */

static void on_text(struct conn *c, const char *p, size_t n, int64_t now) {
    if (c->state == WELCOME) {
        const char *end = p + n;
        const char *type = find(p, end, "\"type\":\"", 8);
        connect_done(c, type && starts(type + 8, end, "welcome\"", 8) ? NULL
                                                                      : "HandshakeFailedError");
        return;
    }
    if (c->state != OPEN) return;
    switch (c->role) {
    case SUBSCRIBER:
        result.frames++;
        each_event(c, p, n, now, sub_event);
        break;
    case PUBLISHER:  /* every broadcast comes here too: skip plain messages at once */
        if (!starts(p, p + n, "{\"type\":\"message\"", 17)) each_event(c, p, n, now, pub_event);
        break;
    case STALLED:
        c->idle_deadline = now + STALLED_IDLE_NS;
        break;
    }
}

/* Every complete frame in p[0..len); returns the bytes used. Stops after a close frame. */
static size_t parse_frames(struct conn *c, char *p, size_t len, int64_t now) {
    size_t offset = 0;
    while (len - offset >= 2 && c->state != ENDED && c->close_code == 0) {
        unsigned char *h = (unsigned char *)p + offset;
        uint64_t length = h[1] & 0x7f;
        size_t start = 2;
        if (length == 126) {
            if (len - offset < 4) break;
            length = (uint64_t)h[2] << 8 | h[3];
            start = 4;
        } else if (length == 127) {
            if (len - offset < 10) break;
            length = 0;
            for (int k = 0; k < 8; k++) length = length << 8 | h[2 + k];
            start = 10;
        }
        bool masked = h[1] & 0x80;  /* a server never masks; unmask anyway */
        if (masked) start += 4;
        if (len - offset < start || len - offset - start < length) break;  /* incomplete */
        char *payload = (char *)h + start;
        if (masked)
            for (uint64_t k = 0; k < length; k++) payload[k] ^= (char)h[start - 4 + k % 4];
        offset += start + (size_t)length;
        int opcode = h[0] & 0x0f;
        bool fin = h[0] & 0x80;
        if (opcode <= 0x2) {  /* continuation, text (binary: the server sends none) */
            if (!fin || c->fragmented) {
                buf_add(&c->fragments, payload, (size_t)length);
                c->fragmented = !fin;
                if (fin) {
                    on_text(c, c->fragments.data, c->fragments.len, now);
                    c->fragments.len = 0;
                }
            } else {
                on_text(c, payload, (size_t)length, now);
            }
        } else if (opcode == 0x9) {  /* ping */
            send_control(c, 0xA, payload, length > 125 ? 125 : (size_t)length);
        } else if (opcode == 0x8) {  /* close: answer with its code */
            c->close_code = length >= 2 ? ((unsigned char)payload[0] << 8 | (unsigned char)payload[1])
                                        : 1005;
            send_control(c, 0x8, payload, length >= 2 ? 2 : 0);
        }
    }
    return offset;
}

/* The connection's socket has data: read once (the unparsed tail first, then up to READ_BYTES
   new bytes), parse every complete frame. */
static void conn_readable(struct conn *c) {
    size_t have = c->tail.len;
    if (w.rbuf_cap < have + READ_BYTES) {
        w.rbuf_cap = have + READ_BYTES;
        w.rbuf = must(realloc(w.rbuf, w.rbuf_cap));
    }
    if (have) memcpy(w.rbuf, c->tail.data, have);
    ssize_t n = read(c->fd, w.rbuf + have, w.rbuf_cap - have);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    int64_t now = now_ns();
    if (n <= 0) {  /* end of stream, or reset */
        if (c->state == HANDSHAKE) connect_done(c, "HandshakeFailedError");
        else if (c->state == WELCOME) connect_done(c, "WebSocketEnded");
        else conn_ended(c, c->close_code ? c->close_code : 1006);
        return;
    }
    size_t total = have + (size_t)n, used = 0;
    char *data = w.rbuf;
    if (c->state == HANDSHAKE) {
        const char *head_end = memmem(data, total, "\r\n\r\n", 4);
        if (head_end == NULL) {
            c->tail.len = 0;
            buf_add(&c->tail, data, total);
            if (total > MAX_HEADER_BYTES) connect_done(c, "HandshakeFailedError");
            return;
        }
        if (total < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
            connect_done(c, "HandshakeFailedError");
            return;
        }
        used = (size_t)(head_end + 4 - data);
        c->state = WELCOME;
    }
    used += parse_frames(c, data + used, total - used, now);
    if (c->state == ENDED) return;
    /* An incomplete frame waits in c->tail; the next read asks for READ_BYTES more than it
       holds (see above), so a frame of any size completes. */
    c->tail.len = 0;
    buf_add(&c->tail, data + used, total - used);
    if (c->close_code) {
        if (c->state == WELCOME) connect_done(c, "WebSocketEnded");
        else conn_ended(c, c->close_code);
        return;
    }
    if (c->role == SUBSCRIBER && c->behind && c->last >= w.target) arrived(c);
}

/* The server closed the connection (code from its close frame, 1006 without one). */
static void conn_ended(struct conn *c, int code) {
    if (c->state == ENDED) return;
    if (c->state != OPEN) {  /* during the handshake */
        connect_done(c, "OSError");
        return;
    }
    conn_close(c);
    switch (c->role) {
    case SUBSCRIBER:
        if (code == 4008) {
            result.evicted++;
        } else if (!w.target_set) {  /* closes after the run are ours */
            char name[16];
            snprintf(name, sizeof name, "%d", code);
            tally(result.closes, &result.n_closes, name);
        }
        c->gone = true;
        arrived(c);
        break;
    case PUBLISHER:
        if (!c->sending_done) {
            count_error("publisher closed: %d", code);
            c->sending_done = true;
        }
        pub_finish(c);  /* no answer can come any more */
        break;
    case STALLED:  /* found out now or after the run: the same fate */
        if (!c->fate_done) {
            if (code == 4008) result.stalled_evicted++;
            else result.stalled_dropped++;
            c->fate_done = true;
            w.stalled_left--;
        }
        break;
    }
}

/* -- the run's phases ------------------------------------------------------------------------ */

static void progress(void) {
    buf_t line = {0};
    buf_printf(&line,
               "{\"kind\":\"progress\",\"connected\":%d,\"sent\":%" PRId64 ",\"acked\":%" PRId64
               ",\"delivered\":%" PRId64 ",\"evicted\":%" PRId64 ",\"errors\":%" PRId64 "}",
               w.connected, result.sent, result.acked, result.delivered, result.evicted,
               error_total);
    emit(&line);
    free(line.data);
}

static void start_drain(const char *command) {
    int64_t now = now_ns();
    double timeout = 10.0;
    json_number(command, "drain_timeout", &timeout);
    w.drain_received = true;
    w.target_set = json_int(command, "target_seq", &w.target);
    w.drain_deadline = now + (int64_t)(timeout * NS_PER_S);
    w.phase = DRAIN;
    if (!w.target_set) return;
    for (int i = 0; i < w.n_conns; i++) {
        struct conn *c = &w.conns[i];
        if (c->role == SUBSCRIBER && !c->gone && c->last < w.target) {
            c->behind = true;
            w.behind++;
        }
    }
}

/* Subscribers are there (or the drain timed out): the measurement is over. */
static void finish_drain(int64_t now) {
    result.cpu_s = (double)(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - w.cpu_start_ns) / NS_PER_S;
    if (w.target_set) {
        const int64_t *seqs = (const int64_t *)w.acked_seqs.data;
        size_t count = w.acked_seqs.len / sizeof *seqs;
        for (size_t i = 0; i < count; i++) result.expected_messages += seqs[i] <= w.target;
        /* Messages past the target (broadcast, their ack not in by the end) are not expected:
           do not count them as delivered either. Each subscriber saw a contiguous run of
           seqs, so they are its last `last - target`. */
        int64_t beyond = 0;
        for (int i = 0; i < w.n_conns; i++) {
            struct conn *c = &w.conns[i];
            if (c->role == SUBSCRIBER && c->last > w.target) beyond += c->last - w.target;
        }
        result.delivered -= beyond < result.delivered ? beyond : result.delivered;
    }
    for (int i = 0; i < w.n_conns; i++) {  /* count nothing more */
        struct conn *c = &w.conns[i];
        if (c->role == SUBSCRIBER) {
            c->unwatched = true;
            conn_update(c);
        }
    }
    buf_t line = {0};
    buf_printf(&line, "{\"kind\":\"drained\"}");
    emit(&line);
    free(line.data);
    /* Stalled subscribers now read what piled up, to learn whether the server evicted them. */
    w.phase = FATE;
    w.fate_read_end = now + STALLED_READ_NS;
    w.fate_end = now + STALLED_WAIT_NS;
    for (int i = 0; i < spec.stalled; i++) {
        struct conn *c = w.stalls[i];
        if (c->state == OPEN) {
            c->idle_deadline = now + STALLED_IDLE_NS;
            conn_update(c);
        }
    }
}

static void stalled_fates(int64_t now) {
    for (int i = 0; i < spec.stalled; i++) {
        struct conn *c = w.stalls[i];
        if (c->state != OPEN || c->fate_done) continue;
        if (now >= c->idle_deadline || now >= w.fate_read_end) {  /* caught up, still open */
            c->fate_done = true;
            w.stalled_left--;
            conn_goodbye(c);
        }
    }
}

static void handle_command(const char *line) {
    const char *cmd = json_field(line, "cmd");
    if (w.phase == READY && cmd && strncmp(cmd, "\"start\"", 7) == 0) {
        int64_t t0;
        if (!json_int(line, "t0_ns", &t0)) t0 = now_ns();
        w.t0_ns = t0;
        w.cpu_start_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        w.phase = WAIT_T0;
    } else if (!w.drain_received && w.phase == PUBLISHED && cmd &&
               strncmp(cmd, "\"drain\"", 7) == 0) {
        start_drain(line);
    } else {
        finish();  /* anything else: stop */
    }
}

/* Every complete line received so far. */
static void run_commands(void) {
    buf_t *in = &w.stdin_buf;
    char *newline;
    while (in->len && (newline = memchr(in->data, '\n', in->len)) != NULL) {
        *newline = '\0';
        handle_command(in->data);
        size_t rest = in->len - (size_t)(newline + 1 - in->data);
        memmove(in->data, newline + 1, rest);
        in->len = rest;
    }
}

static void stdin_readable(void) {
    buf_t *in = &w.stdin_buf;
    buf_reserve(in, 4096);
    ssize_t n = read(STDIN_FILENO, in->data + in->len, in->cap - in->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {  /* the coordinator went away */
        epoll_ctl(w.epoll, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
        if (!w.drain_received) {
            count_error("worker: EOFError");
            finish();
        }
        return;
    }
    in->len += (size_t)n;
    run_commands();
}

static void tick(int64_t now) {
    if (now >= w.next_progress_ns) {
        progress();
        w.next_progress_ns += PROGRESS_NS;
        if (w.next_progress_ns < now) w.next_progress_ns = now + PROGRESS_NS;
    }
    if (w.phase == CONNECT && now >= w.next_timeouts_ns) {
        check_connect_timeouts(now);
        w.next_timeouts_ns = now + SLICE_NS;
    }
    if (w.phase == WAIT_T0 && now >= w.t0_ns) start_publishing(now);
    if (w.phase == PUBLISH) {
        for (int i = 0; i < spec.publishers; i++) {
            struct conn *c = w.pubs[i];
            if (c->finished) continue;
            if (!c->sending_done) pub_pump(c);
            else if (now >= c->drain_deadline) pub_finish(c);
        }
    }
    if (w.phase == DRAIN && (w.behind == 0 || now >= w.drain_deadline)) finish_drain(now);
    if (w.phase == FATE) {
        stalled_fates(now);
        if (w.stalled_left <= 0 || now >= w.fate_end) finish();
    }
}

/* Milliseconds until tick() has something to do (rounded up), at most a second. */
static int timeout_ms(int64_t now) {
    int64_t next = w.next_progress_ns;
    if (w.phase == CONNECT || w.phase == FATE) next = now + SLICE_NS < next ? now + SLICE_NS : next;
    if (w.phase == WAIT_T0 && w.t0_ns < next) next = w.t0_ns;
    if (w.phase == DRAIN && w.drain_deadline < next) next = w.drain_deadline;
    if (w.phase == PUBLISH) {
        for (int i = 0; i < spec.publishers; i++) {
            struct conn *c = w.pubs[i];
            if (c->finished) continue;
            int64_t due = c->sending_done ? c->drain_deadline : w.end_ns;
            if (!c->sending_done && spec.rate > 0 && c->out_sent == c->out.len && c->next_ns < due)
                due = c->next_ns;
            if (due < next) next = due;
        }
    }
    if (next <= now) return 0;
    int64_t ms = (next - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 1000 ? 1000 : (int)ms;
}

static void json_tallies(buf_t *line, const char *key, const tally_t *table, int count) {
    buf_printf(line, ",\"%s\":{", key);
    for (int i = 0; i < count; i++)
        buf_printf(line, "%s\"%s\":%" PRId64, i ? "," : "", table[i].name, table[i].count);
    buf_printf(line, "}");
}

/* Report everything measured and exit. */
static void finish(void) {
    w.finishing = true;
    for (int i = 0; i < w.n_conns; i++) conn_goodbye(&w.conns[i]);
    buf_t line = {0};
    buf_printf(&line, "{\"kind\":\"result\",\"connect_ms\":[");
    const double *ms = (const double *)result.connect_ms.data;
    size_t count = result.connect_ms.len / sizeof *ms;
    for (size_t i = 0; i < count; i++) buf_printf(&line, "%s%.3f", i ? "," : "", ms[i]);
    buf_printf(&line, "],\"connect_wall_s\":%.6f", result.connect_wall_s);
    buf_printf(&line,
               ",\"connect_failed\":%" PRId64 ",\"sent\":%" PRId64 ",\"acked\":%" PRId64
               ",\"expected_messages\":%" PRId64,
               result.connect_failed, result.sent, result.acked, result.expected_messages);
    buf_printf(&line, ",\"first_seq\":");
    buf_printf(&line, result.first_seq < 0 ? "null" : "%" PRId64, result.first_seq);
    buf_printf(&line, ",\"last_seq\":");
    buf_printf(&line, result.last_seq < 0 ? "null" : "%" PRId64, result.last_seq);
    buf_printf(&line,
               ",\"delivered\":%" PRId64 ",\"frames\":%" PRId64 ",\"events\":%" PRId64
               ",\"gaps\":%" PRId64 ",\"missing\":%" PRId64 ",\"duplicates\":%" PRId64
               ",\"evicted\":%" PRId64 ",\"stalled_evicted\":%" PRId64
               ",\"stalled_dropped\":%" PRId64,
               result.delivered, result.frames, result.events, result.gaps, result.missing,
               result.duplicates, result.evicted, result.stalled_evicted, result.stalled_dropped);
    json_tallies(&line, "closes", result.closes, result.n_closes);
    json_tallies(&line, "errors", result.errors, result.n_errors);
    buf_printf(&line, ",\"latency\":{");
    bool first = true;
    for (int bucket = 0; bucket < HIST_BUCKETS; bucket++) {
        if (result.latency[bucket] == 0) continue;
        buf_printf(&line, "%s\"%d\":%" PRId64, first ? "" : ",", bucket, result.latency[bucket]);
        first = false;
    }
    buf_printf(&line, "},\"last_receive_ns\":%" PRId64 ",\"publish_lag_ms\":%.6f,\"cpu_s\":%.6f}",
               result.last_receive_ns, result.publish_lag_ms, result.cpu_s);
    emit(&line);
    exit(0);
}

/* -- main ------------------------------------------------------------------------------------ */

static char *read_first_line(void) {
    buf_t *in = &w.stdin_buf;
    for (;;) {
        char *newline = in->len ? memchr(in->data, '\n', in->len) : NULL;
        if (newline != NULL) {
            size_t length = (size_t)(newline - in->data);
            char *line = must(malloc(length + 1));
            memcpy(line, in->data, length);
            line[length] = '\0';
            memmove(in->data, newline + 1, in->len - length - 1);
            in->len -= length + 1;
            return line;
        }
        buf_reserve(in, 4096);
        ssize_t n = read(STDIN_FILENO, in->data + in->len, in->cap - in->len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) bad_spec("line (end of input)");
        in->len += (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc > 1) {
        fprintf(stderr, "usage: %s < spec-and-commands (see the comment at the top of "
                        "loadgen.c; run by `trio-broadcast bench --driver c`)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);  /* the coordinator handles Ctrl-C and closes our stdin */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }

    char *line = read_first_line();
    read_spec(line);
    free(line);

    w.n_conns = spec.subscribers + spec.publishers + spec.stalled;
    w.conns = must(calloc((size_t)(w.n_conns ? w.n_conns : 1), sizeof *w.conns));
    w.pubs = must(calloc((size_t)spec.publishers + 1, sizeof *w.pubs));
    w.stalls = must(calloc((size_t)spec.stalled + 1, sizeof *w.stalls));
    for (int i = 0; i < w.n_conns; i++) {  /* the Python worker's order */
        struct conn *c = &w.conns[i];
        c->fd = -1;
        c->last = -1;
        c->last_acked = -1;
        if (i < spec.subscribers) {
            c->role = SUBSCRIBER;
        } else if (i < spec.subscribers + spec.publishers) {
            c->role = PUBLISHER;
            c->number = (int)spec.numbers[i - spec.subscribers];
            w.pubs[i - spec.subscribers] = c;
        } else {
            c->role = STALLED;
            w.stalls[i - spec.subscribers - spec.publishers] = c;
        }
    }
    w.pending = w.n_conns;
    w.publishers_left = spec.publishers;
    w.stalled_left = spec.stalled;
    w.rbuf_cap = READ_BYTES * 2;
    w.rbuf = must(malloc(w.rbuf_cap));

    w.epoll = epoll_create1(EPOLL_CLOEXEC);
    if (w.epoll < 0) {
        perror("loadgen: epoll_create1");
        return 1;
    }
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    struct epoll_event input = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(w.epoll, EPOLL_CTL_ADD, STDIN_FILENO, &input);

    int64_t now = now_ns();
    w.next_progress_ns = now + PROGRESS_NS;
    w.connect_started_ns = now;
    w.phase = CONNECT;
    start_connects();
    if (w.pending == 0 && w.phase == CONNECT) report_connected();
    run_commands();  /* any that came with the spec line */

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w.epoll, events, MAX_EVENTS, timeout_ms(now_ns()));
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t ready = events[i].events;
            if (c == NULL) {
                stdin_readable();
                continue;
            }
            if (c->state == ENDED) continue;  /* closed earlier in this batch */
            if (c->state == CONNECTING) {
                int error = 0;
                socklen_t size = sizeof error;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
                if (error != 0) {
                    connect_done(c, "OSError");
                    continue;
                }
                c->state = HANDSHAKE;
                conn_send(c, spec.request, spec.request_len);
                conn_update(c);
                continue;
            }
            if (ready & EPOLLOUT) {
                conn_flush(c);
                if (c->role == PUBLISHER && c->state == OPEN) pub_pump(c);
            }
            if ((ready & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->state != ENDED &&
                (c->events & EPOLLIN))
                conn_readable(c);
        }
        tick(now_ns());
    }
}
