// trace-funcs: which functions of a binary a command runs, in every process
// of the command that runs that binary (forks included, exec'd programs
// other than the binary are let go).
//
//   trace-funcs ENTRIES OUT -- BINARY ARGS...
//
// ENTRIES lists function entry offsets from the binary's load address, one
// hex number per line (from `nm`). Each entry gets a breakpoint (int3) in
// each process image of BINARY; the first hit of an entry in a process
// records it, puts the original byte back in that process and resumes.
// OUT gets every entry hit, one 16-digit hex offset per line (as nm prints
// addresses), appended.
//
// A dev tool for hack/order/gen.sh (the link order of berth's hot code),
// not part of berth. A BINARY that re-executes itself from another view of
// the same file (same inode) is traced on.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t *entries;
static unsigned char *orig;
static unsigned char *hit;
static size_t n_entries;
static char binary[4096];

static int cmp_u64(const void *a, const void *b) {
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static long find_entry(uint64_t off) {
	size_t lo = 0, hi = n_entries;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (entries[mid] == off)
			return (long)mid;
		if (entries[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

// Per traced pid: the load base of BINARY in it (0: not BINARY).
#define MAXP 4096
static pid_t pids[MAXP];
static uint64_t bases[MAXP];

static int slot(pid_t p, int create) {
	for (int i = 0; i < MAXP; i++)
		if (pids[i] == p)
			return i;
	if (!create)
		return -1;
	for (int i = 0; i < MAXP; i++)
		if (pids[i] == 0) {
			pids[i] = p;
			bases[i] = 0;
			return i;
		}
	fprintf(stderr, "trace-funcs: too many processes\n");
	exit(1);
}

static unsigned long binary_ino;

// The load base of BINARY in p: its mapping at offset 0, found by inode (a
// berth that re-executes itself from a detached read-only clone of its
// binary shows the file as "/").
static uint64_t base_of(pid_t p) {
	char path[64], line[8192];
	snprintf(path, sizeof path, "/proc/%d/maps", p);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	uint64_t base = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long start, offset, ino;
		char perms[8];
		if (sscanf(line, "%lx-%*x %7s %lx %*s %lu", &start, perms, &offset, &ino) == 4 &&
		    offset == 0 && ino == binary_ino) {
			base = start;
			break;
		}
	}
	fclose(f);
	return base;
}

static int mem_fd(pid_t p) {
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", p);
	return open(path, O_RDWR | O_CLOEXEC);
}

// Breakpoints on every entry not yet hit in this process image.
static void arm(pid_t p, uint64_t base) {
	int fd = mem_fd(p);
	if (fd < 0) {
		perror("trace-funcs: open mem");
		return;
	}
	unsigned char cc = 0xcc;
	for (size_t i = 0; i < n_entries; i++) {
		if (pread(fd, &orig[i], 1, (off_t)(base + entries[i])) != 1 ||
		    pwrite(fd, &cc, 1, (off_t)(base + entries[i])) != 1) {
			fprintf(stderr, "trace-funcs: patch %lx: %s\n", (unsigned long)entries[i], strerror(errno));
			break;
		}
	}
	close(fd);
}

int main(int argc, char **argv) {
	if (argc < 5 || strcmp(argv[3], "--") != 0) {
		fprintf(stderr, "usage: trace-funcs ENTRIES OUT -- BINARY ARGS...\n");
		return 2;
	}
	FILE *ef = fopen(argv[1], "r");
	if (!ef) {
		perror(argv[1]);
		return 1;
	}
	size_t cap = 1 << 16;
	entries = malloc(cap * sizeof *entries);
	unsigned long v;
	while (fscanf(ef, "%lx", &v) == 1) {
		if (n_entries == cap)
			entries = realloc(entries, (cap *= 2) * sizeof *entries);
		entries[n_entries++] = v;
	}
	fclose(ef);
	qsort(entries, n_entries, sizeof *entries, cmp_u64);
	orig = calloc(n_entries, 1);
	hit = calloc(n_entries, 1);
	if (!realpath(argv[4], binary)) {
		perror(argv[4]);
		return 1;
	}
	struct stat st;
	if (stat(binary, &st) != 0) {
		perror(binary);
		return 1;
	}
	binary_ino = st.st_ino;

	pid_t child = fork();
	if (child == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		personality(ADDR_NO_RANDOMIZE);
		execv(argv[4], &argv[4]);
		_exit(127);
	}
	int status;
	waitpid(child, &status, 0); // stopped at the exec
	ptrace(PTRACE_SETOPTIONS, child, 0,
	       PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
		   PTRACE_O_EXITKILL);
	int s = slot(child, 1);
	bases[s] = base_of(child);
	if (bases[s])
		arm(child, bases[s]);
	ptrace(PTRACE_CONT, child, 0, 0);
	int exit_code = 0;

	for (;;) {
		pid_t p = waitpid(-1, &status, __WALL);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			break; // no tracee left
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			int i = slot(p, 0);
			if (i >= 0)
				pids[i] = 0;
			if (p == child)
				exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			continue;
		}
		if (!WIFSTOPPED(status))
			continue;
		int sig = WSTOPSIG(status);
		int event = status >> 16;
		int i = slot(p, 1);
		if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE) {
			unsigned long np;
			ptrace(PTRACE_GETEVENTMSG, p, 0, &np);
			int j = slot((pid_t)np, 1);
			bases[j] = bases[i]; // same memory image (breakpoints included)
			ptrace(PTRACE_CONT, p, 0, 0);
			continue;
		}
		if (event == PTRACE_EVENT_EXEC) {
			bases[i] = base_of(p);
			if (!bases[i]) { // another program: not ours to trace
				ptrace(PTRACE_DETACH, p, 0, 0);
				pids[i] = 0;
				continue;
			}
			arm(p, bases[i]);
			ptrace(PTRACE_CONT, p, 0, 0);
			continue;
		}
		if (event == PTRACE_EVENT_STOP || (sig == SIGSTOP && event == 0 && bases[i] && 0)) {
			ptrace(PTRACE_CONT, p, 0, 0);
			continue;
		}
		if (sig == SIGTRAP && bases[i]) {
			struct user_regs_struct regs;
			ptrace(PTRACE_GETREGS, p, 0, &regs);
			uint64_t at = regs.rip - 1;
			long e = at >= bases[i] ? find_entry(at - bases[i]) : -1;
			if (e >= 0) {
				hit[e] = 1;
				int fd = mem_fd(p);
				if (fd >= 0) {
					if (pwrite(fd, &orig[e], 1, (off_t)at) != 1)
						perror("trace-funcs: restore");
					close(fd);
				}
				regs.rip = at;
				ptrace(PTRACE_SETREGS, p, 0, &regs);
				ptrace(PTRACE_CONT, p, 0, 0);
				continue;
			}
		}
		// A new child's first stop, or a real signal: pass real signals on.
		if (sig == SIGSTOP) {
			ptrace(PTRACE_CONT, p, 0, 0);
			continue;
		}
		ptrace(PTRACE_CONT, p, 0, (void *)(long)sig);
	}

	FILE *out = fopen(argv[2], "a");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	for (size_t k = 0; k < n_entries; k++)
		if (hit[k])
			fprintf(out, "%016lx\n", (unsigned long)entries[k]);
	fclose(out);
	return exit_code;
}
