/*
 * crashy: the crashing app of bench/core.py's crash-to-restart section.
 *
 *   crashy LOGFILE [RUN_MS]
 *       appends "S <ns>" (CLOCK_REALTIME, nanoseconds) to LOGFILE, sleeps RUN_MS
 *       milliseconds (default 200), appends "E <ns>" and exits with status 1.
 *
 *   crashy --loop LOGFILE [RUN_MS]
 *       the floor: a minimal supervisor that fork()s and execv()s `crashy LOGFILE
 *       RUN_MS` (its own binary, /proc/self/exe) again as soon as waitpid() reports
 *       that the previous run exited, forever (until it is killed).  The gap
 *       between one run's "E" and the next run's "S" is then the cost of exit +
 *       reaping + fork + exec + dynamic loading, with no supervision logic at all.
 *
 * Each line is written with one write(2) on an O_APPEND descriptor, so the
 * timestamps are taken as close as possible to process start and exit.
 * Built by core.py with `gcc -O2 -o crashy crashy.c`; no dependencies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void mark(int fd, char kind) {
    struct timespec ts;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    int n = snprintf(buf, sizeof buf, "%c %lld\n", kind, ns);
    if (write(fd, buf, (size_t)n) != n) {
        _exit(2);
    }
}

static int run(const char *logfile, long run_ms) {
    int fd = open(logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return 2;
    }
    mark(fd, 'S');
    struct timespec d = {run_ms / 1000, (run_ms % 1000) * 1000000L};
    while (nanosleep(&d, &d) != 0 && errno == EINTR) {
    }
    mark(fd, 'E');
    return 1;
}

static int loop(const char *logfile, const char *run_ms) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 2;
    }
    self[n] = '\0';
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            char *argv[] = {self, (char *)logfile, (char *)run_ms, NULL};
            execv(self, argv);
            _exit(127);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--loop") == 0) {
        return loop(argv[2], argc >= 4 ? argv[3] : "200");
    }
    if (argc < 2) {
        fprintf(stderr, "usage: crashy LOGFILE [RUN_MS] | crashy --loop LOGFILE [RUN_MS]\n");
        return 2;
    }
    return run(argv[1], argc >= 3 ? strtol(argv[2], NULL, 10) : 200);
}
