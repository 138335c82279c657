/*
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to the AF_UNIX
 * socket that $NOTIFY_SOCKET names (a path, or an abstract name written with a leading '@').
 * Without $NOTIFY_SOCKET (not started by systemd, or not Type=notify) every call does nothing.
 *
 * The unit (systemd/cplow.service) sets NotifyAccess=main: only the supervisor's datagrams
 * count, so the roles it forks and the rclones they run cannot report anything by accident.
 */
#ifndef CPLOW_SDNOTIFY_H
#define CPLOW_SDNOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", "STATUS=...", newline-separated assignments).
 * Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset or empty, or a negative errno (an
 * address that is neither absolute nor abstract, or too long: -EINVAL). */
int sdnotify_send(const char *state);

/* The supervisor holds the instance lock, its ledger is restored and its flusher started.
 * A failure to send is logged (systemd will time the start out) and never fails the caller. */
void sdnotify_ready(void);

/* A stop signal was received: the graceful stop (in-flight checks, final flush) is under way. */
void sdnotify_stopping(void);

#endif
