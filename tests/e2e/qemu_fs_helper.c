/*
 * fsh: the system calls the end-to-end virtio-fs tests need and busybox does not make
 * (extended attributes and file capabilities, mmap, rename(2) and link(2) with no copy
 * fallback, linkat(AT_SYMLINK_FOLLOW), O_APPEND writers, creating files with a given mode,
 * running a program as another user). Built by the test with `gcc -static` and run in the
 * guest from a read-only share. On failure it prints "fsh: CMD: strerror" and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static int fail(const char *cmd) {
    fprintf(stderr, "fsh: %s: %s\n", cmd, strerror(errno));
    return 1;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fsh CMD ARGS...\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "setxattr") && argc == 5) {
        if (lsetxattr(argv[2], argv[3], argv[4], strlen(argv[4]), 0) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "getxattr") && argc == 4) {
        char buf[65536];
        ssize_t n = lgetxattr(argv[2], argv[3], buf, sizeof buf);
        if (n < 0)
            return fail(cmd);
        printf("%.*s\n", (int)n, buf);
        return 0;
    }
    if (!strcmp(cmd, "listxattr") && argc == 3) {
        char buf[65536];
        ssize_t n = llistxattr(argv[2], buf, sizeof buf);
        if (n < 0)
            return fail(cmd);
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
            printf("%s\n", buf + i);
        return 0;
    }
    if (!strcmp(cmd, "removexattr") && argc == 4) {
        if (lremovexattr(argv[2], argv[3]) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "mmapcat") && argc == 3) {
        /* The whole file through a private read-only mapping, to stdout. */
        int fd = open(argv[2], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0)
            return fail(cmd);
        if (st.st_size == 0)
            return 0;
        char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return fail(cmd);
        if (write_all(1, p, (size_t)st.st_size) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "mmapwrite") && argc == 5) {
        /* Writes TEXT at OFFSET of an existing file through a shared mapping. */
        int fd = open(argv[2], O_RDWR);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0)
            return fail(cmd);
        size_t off = strtoul(argv[3], NULL, 0), len = strlen(argv[4]);
        if (off + len > (size_t)st.st_size) {
            errno = EINVAL;
            return fail(cmd);
        }
        char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return fail(cmd);
        memcpy(p + off, argv[4], len);
        if (msync(p, (size_t)st.st_size, MS_SYNC) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "rename") && argc == 4) {
        if (rename(argv[2], argv[3]) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "link") && argc == 4) {
        if (link(argv[2], argv[3]) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "linkfollow") && argc == 4) {
        /* linkat(AT_SYMLINK_FOLLOW): a link to what a symlink names, not to the symlink. */
        if (linkat(AT_FDCWD, argv[2], AT_FDCWD, argv[3], AT_SYMLINK_FOLLOW) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "setcap") && argc == 3) {
        /* A well-formed security.capability (VFS_CAP_REVISION_2, cap_net_raw permitted
         * and effective), so that the guest kernel passes it on to the file server. */
        struct {
            unsigned int magic_etc;
            struct {
                unsigned int permitted, inheritable;
            } data[2];
        } cap = {0x02000000u | 1u, {{1u << 13, 0}, {0, 0}}};
        if (lsetxattr(argv[2], "security.capability", &cap, sizeof cap, 0) != 0)
            return fail(cmd);
        return 0;
    }
    if (!strcmp(cmd, "runas") && argc >= 6) {
        /* runas UID GID GROUPS PROG ARGS...: PROG as that user, with the supplementary
         * groups GROUPS (comma-separated, or "-" for none). */
        uid_t uid = (uid_t)strtoul(argv[2], NULL, 10);
        gid_t gid = (gid_t)strtoul(argv[3], NULL, 10);
        gid_t groups[32];
        size_t n = 0;
        for (char *g = strtok(argv[4], ","); g && n < 32; g = strtok(NULL, ","))
            if (strcmp(g, "-"))
                groups[n++] = (gid_t)strtoul(g, NULL, 10);
        if (setgroups(n, groups) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
            return fail(cmd);
        execv(argv[5], argv + 5);
        return fail(cmd);
    }
    if (!strcmp(cmd, "create") && argc == 4) {
        /* O_CREAT|O_EXCL with MODE (octal), umask 0. */
        umask(0);
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, (mode_t)strtoul(argv[3], NULL, 8));
        if (fd < 0)
            return fail(cmd);
        return close(fd) == 0 ? 0 : fail(cmd);
    }
    if (!strcmp(cmd, "append") && argc == 5) {
        /* COUNT lines "TAG N\n", each one write(2) on an O_APPEND descriptor. */
        int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd < 0)
            return fail(cmd);
        long count = strtol(argv[4], NULL, 10);
        for (long i = 1; i <= count; i++) {
            char line[256];
            int len = snprintf(line, sizeof line, "%s %ld\n", argv[3], i);
            if (write(fd, line, (size_t)len) != len)
                return fail(cmd);
        }
        return close(fd) == 0 ? 0 : fail(cmd);
    }
    fprintf(stderr, "fsh: unknown command or arguments: %s\n", cmd);
    return 2;
}
