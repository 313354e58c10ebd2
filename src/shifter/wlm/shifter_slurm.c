/*
 * shifter_slurm.so: Shifter's SPANK plugin, a forwarder.
 *
 * Slurm can only load C, so this file does what the SPANK ABI forces and nothing else:
 * it registers the options, keeps their values, and hands every decision to Python
 * (`shifter-slurm-hook`, shifter.wlm) by running it with plain arguments:
 *
 *   allocator/local (sbatch, salloc, srun), as the user:
 *       HOOK submit CONFIG IMAGE_GIVEN IMAGE VOLUME MODULE CCM
 *     prints NAME=VALUE lines: each goes to the job's control environment (the prolog and
 *     epilog see SPANK_NAME) and to the job's environment; a non-zero exit aborts the
 *     submission (its stderr is the user's terminal).
 *   job_prolog / job_epilog (slurmstepd spank prolog/epilog), as root, only for a job with
 *   an image:  HOOK prolog|epilog CONFIG  with a fixed environment built here (never the
 *     job's): the values the job's control environment holds are re-validated in Python.
 *     The prolog always succeeds: in Slurm 22.05 a failing prolog drains the node.
 *   task_init_privileged (every task, as root, before slurmstepd becomes the user): in a
 *     --ccm job whose prolog built the container on this node (its record names udiMount),
 *     chroot the task into it, so the batch script and every task run in the CCM
 *     environment, as the original did.
 *   task_init (every task of every step, as the user): when the prolog left a failure
 *     record for this job on this node, print its reason and fail the task.
 *   task_post_fork of the extern step (extern_cgroup=1 or extern_setup=FILE), as root:
 *     HOOK extern CONFIG (fixed environment) moves the job's sshd into the step's cgroups
 *     and runs the site's extern_setup; then records the extern step as done. With either
 *     option, the tasks of the job's other steps wait (up to EXTERN_WAIT_S) for that record
 *     before they start (task_init_privileged).
 *
 * Built on the machine against the installed Slurm headers by `shifter-slurm-conf build`,
 * which defines SHIFTER_HOOK and SHIFTER_STATE_DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

#ifndef SHIFTER_HOOK
#error "build with -DSHIFTER_HOOK=\"/path/to/shifter-slurm-hook\" (shifter-slurm-conf build)"
#endif
#ifndef SHIFTER_STATE_DIR
#error "build with -DSHIFTER_STATE_DIR=\"/run/shifter-slurm\" (shifter-slurm-conf build)"
#endif
#define DEFAULT_CONFIG "/etc/shifter/udiRoot.conf"
#define VALUE_MAX 4096
#define EXTERN_WAIT_S 10 /* as the original: the first srun may race the extern step */

SPANK_PLUGIN(shifter, 1);

static char image[VALUE_MAX], volume[VALUE_MAX], module[VALUE_MAX];
static int ccm, image_given;
static char config[VALUE_MAX] = DEFAULT_CONFIG;
static int enable_ccm, enable_sshd, extern_cgroup;
static char extern_setup[VALUE_MAX], memory_cgroup[VALUE_MAX];

static int copy(char *to, const char *from, const char *what) {
    if (from == NULL || strlen(from) >= VALUE_MAX) {
        slurm_error("shifter: %s is too long", what);
        return -1;
    }
    strcpy(to, from);
    return 0;
}

static int opt_image(int val, const char *arg, int remote) {
    (void)val; (void)remote;
    image_given = 1;  /* an empty --image= is an error, said by the hook */
    return copy(image, arg, "--image");
}

/* Repeated --volume options add up (the original kept only the last one). */
static int opt_volume(int val, const char *arg, int remote) {
    (void)val; (void)remote;
    if (arg == NULL || strlen(volume) + strlen(arg) + 2 > VALUE_MAX) {
        slurm_error("shifter: --volume is too long");
        return -1;
    }
    if (volume[0] != '\0') strcat(volume, ";");
    strcat(volume, arg);
    return 0;
}

static int opt_module(int val, const char *arg, int remote) {
    (void)val; (void)remote;
    return copy(module, arg, "--module");
}

static int opt_ccm(int val, const char *arg, int remote) {
    (void)val; (void)arg; (void)remote;
    ccm = 1;
    return 0;
}

static struct spank_option options[] = {
    {"image", "TYPE:TAG", "shifter image of the job (docker:REPO:TAG, custom:NAME, id:ID)",
     1, 0, opt_image},
    {"volume", "SRC:DEST[:FLAGS]", "shifter volume (repeatable, or ';'-separated)",
     1, 0, opt_volume},
    {"module", "LIST", "shifter modules, comma-separated, or none", 1, 0, opt_module},
    SPANK_OPTIONS_TABLE_END,
};
static struct spank_option ccm_option = {
    "ccm", NULL, "CCM mode: the site's environment as a container, with sshd", 0, 0, opt_ccm,
};

static int flag(const char *arg, const char *value, int *out) {
    if (strcmp(value, "0") == 0 || strcmp(value, "1") == 0) {
        *out = value[0] == '1';
        return 0;
    }
    slurm_error("shifter: plugstack.conf argument %s: expected 0 or 1", arg);
    return -1;
}

/* plugstack.conf arguments (the seed's list); anything else is an error. */
static int parse_args(int ac, char **av) {
    for (int i = 0; i < ac; i++) {
        const char *arg = av[i], *eq = strchr(arg, '=');
        size_t key = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *value = eq ? eq + 1 : "";
#define KEY(name) (key == strlen(name) && strncasecmp(arg, name, key) == 0)
        int rc;
        if (KEY("shifter_config")) rc = value[0] == '/' ? copy(config, value, arg) : -1;
        else if (KEY("extern_setup")) rc = value[0] == '/' ? copy(extern_setup, value, arg) : -1;
        else if (KEY("memory_cgroup")) rc = value[0] == '/' ? copy(memory_cgroup, value, arg) : -1;
        else if (KEY("extern_cgroup")) rc = flag(arg, value, &extern_cgroup);
        else if (KEY("enable_ccm")) rc = flag(arg, value, &enable_ccm);
        else if (KEY("enable_sshd")) rc = flag(arg, value, &enable_sshd);
        else {
            slurm_error("shifter: unknown plugstack.conf argument '%s' (known: shifter_config, "
                        "extern_setup, extern_cgroup, memory_cgroup, enable_ccm, enable_sshd)",
                        arg);
            return -1;
        }
#undef KEY
        if (rc != 0) {
            slurm_error("shifter: plugstack.conf argument '%s' is not valid (paths are "
                        "absolute, flags 0 or 1)", arg);
            return -1;
        }
    }
    if (enable_ccm && !enable_sshd) {
        slurm_error("shifter: enable_ccm=1 needs enable_sshd=1 in plugstack.conf");
        return -1;
    }
    return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av) {
    if (parse_args(ac, av) != 0) return -1;
    if (spank_context() == S_CTX_JOB_SCRIPT) return 0;  /* prolog/epilog read no options */
    for (struct spank_option *opt = options; opt->name != NULL; opt++)
        if (spank_option_register(sp, opt) != ESPANK_SUCCESS) return -1;
    if (enable_ccm && spank_option_register(sp, &ccm_option) != ESPANK_SUCCESS) return -1;
    return 0;
}

/* Run the hook: argv, env (NULL: inherit), stdout into `out` (NULL: to our stderr), stderr
 * inherited or (merge) into `out` too. Returns the exit status, or -1. */
static int run_hook(char *const argv[], char *const envp[], char *out, size_t size, int merge) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        if (merge) dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (envp) execve(argv[0], argv, envp);
        else execv(argv[0], argv);
        dprintf(STDERR_FILENO, "shifter: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        char chunk[1024];
        ssize_t got = read(fds[0], chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        size_t keep = (size_t)got < size - 1 - used ? (size_t)got : size - 1 - used;
        memcpy(out + used, chunk, keep);
        used += keep;
    }
    out[used] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Inside an allocation, srun replays the job's options from its environment
 * (SLURM_SPANK__SLURM_SPANK_OPTION_shifter_NAME, one value per option: the last of several
 * --volume), then adds its own command line's. When the image is the job's pinned `id:`
 * (sbatch) or the request the job pinned (salloc sets the replayed value after this plugin
 * ran) and the volumes and modules are only the replay, the step is the job's: its
 * environment already holds the job's checked values, so nothing runs (no Python per step,
 * no gateway). Only the user's own srun is concerned: the nodes never see this choice. */
static int only_replayed(const char *value, const char *name) {
    char var[128];
    snprintf(var, sizeof(var), "SLURM_SPANK__SLURM_SPANK_OPTION_shifter_%s", name);
    const char *replay = getenv(var);
    return value[0] == '\0' || (replay != NULL && strcmp(value, replay) == 0);
}

/* The job's value: SHIFTER_NAME (the job's environment), else SLURM_SPANK_SHIFTER_NAME
 * (its control environment, which Slurm gives every task of a batch job). */
static const char *job_value(const char *name) {
    char var[64];
    snprintf(var, sizeof(var), "SHIFTER_%s", name);
    if (getenv("SHIFTER_IMAGE") != NULL) return getenv(var);
    snprintf(var, sizeof(var), "SLURM_SPANK_SHIFTER_%s", name);
    return getenv(var);
}

static int replayed(void) {
    const char *id = job_value("IMAGE"), *type = job_value("IMAGETYPE");
    const char *request = job_value("IMAGEREQUEST");
    if (!getenv("SLURM_JOB_ID") || !id || !type || strcmp(type, "id") != 0) return 0;
    int same = (strncmp(image, "id:", 3) == 0 && strcmp(image + 3, id) == 0) ||
               (request != NULL && strcmp(image, request) == 0);
    return same && only_replayed(volume, "volume") && only_replayed(module, "module");
}

static int submit(spank_t sp) {
    static char out[4 * VALUE_MAX];
    char pinned_type[16] = "id";
    char *argv[] = {SHIFTER_HOOK, "submit", config, image_given ? "1" : "0", image, volume,
                    module, ccm ? "1" : "0", enable_sshd ? "1" : "0", NULL};
    int status = run_hook(argv, NULL, out, sizeof(out), 0);
    if (status != 0) {
        if (status < 0) slurm_error("shifter: cannot run %s: %m", SHIFTER_HOOK);
        return -1;
    }
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        /* Here spank_setenv is not available: sbatch, salloc and srun pass their own
         * environment on to the job. */
        if (spank_job_control_setenv(sp, line, eq + 1, 1) != ESPANK_SUCCESS ||
            setenv(line, eq + 1, 1) != 0) {
            slurm_error("shifter: cannot set %s for the job", line);
            return -1;
        }
        if (strcmp(line, "SHIFTER_IMAGETYPE") == 0)
            snprintf(pinned_type, sizeof(pinned_type), "%s", eq + 1);
        /* The option itself becomes the pinned image (TYPE:VALUE, the type printed first),
         * so the job's later sruns replay it (sbatch keeps this; salloc overwrites it
         * afterwards: see replayed()). Not for --ccm: its sruns replay --ccm itself. */
        if (strcmp(line, "SHIFTER_IMAGE") == 0 && !ccm) {
            char pinned[VALUE_MAX + 16];
            snprintf(pinned, sizeof(pinned), "%s:%s", pinned_type, eq + 1);
            setenv("_SLURM_SPANK_OPTION_shifter_image", pinned, 1);
            setenv("SLURM_SPANK__SLURM_SPANK_OPTION_shifter_image", pinned, 1);
        }
    }
    return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av) {
    (void)ac; (void)av;
    spank_context_t context = spank_context();
    if (context != S_CTX_ALLOCATOR && context != S_CTX_LOCAL) return 0;
    if (!image_given && volume[0] == '\0' && module[0] == '\0' && !ccm) return 0;
    if (context == S_CTX_LOCAL && replayed()) return 0;
    return submit(sp);
}

static void add_env(char **envp, int *n, char *buf, size_t size, const char *name,
                    const char *value) {
    if (value == NULL) return;
    snprintf(buf, size, "%s=%s", name, value);
    envp[(*n)++] = buf;
}

static int job_record(spank_t sp, const char *suffix, char *text, size_t size);

/* prolog/epilog: for jobs whose control environment names an image; the epilog also
 * wherever this node keeps a record of the job (it cleans up what the prolog left,
 * whatever the environment it is given). */
static int job_script(spank_t sp, const char *what) {
    const char *job_image = getenv("SPANK_SHIFTER_IMAGE");
    char record[64];
    if ((job_image == NULL || job_image[0] == '\0') &&
        (strcmp(what, "epilog") != 0 || (job_record(sp, "setup", record, sizeof(record)) != 0 &&
                                         job_record(sp, "failed", record, sizeof(record)) != 0)))
        return 0;
    if (job_image == NULL) job_image = "";
    uint32_t job_id = 0;
    uid_t uid = 0;
    if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS) {
        slurm_error("shifter: %s: cannot get the job's id or uid", what);
        return 0;
    }
    static char bufs[15][VALUE_MAX + 64];
    char *envp[16];
    int n = 0;
    char number[32];
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "PATH", "/usr/bin:/usr/sbin:/bin:/sbin");
    snprintf(number, sizeof(number), "%u", job_id);
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SLURM_JOB_ID", number);
    snprintf(number, sizeof(number), "%u", (unsigned)uid);
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SLURM_JOB_UID", number);
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SLURMD_NODENAME", getenv("SLURMD_NODENAME"));
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SLURM_CONF", getenv("SLURM_CONF"));
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_IMAGE", job_image);
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_IMAGETYPE",
            getenv("SPANK_SHIFTER_IMAGETYPE"));
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_VOLUME",
            getenv("SPANK_SHIFTER_VOLUME"));
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_MODULE",
            getenv("SPANK_SHIFTER_MODULE"));
    /* The site's choice (plugstack.conf), never the job's; the key is the job's (checked). */
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SHIFTER_ENABLE_SSHD", enable_sshd ? "1" : "0");
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_SSH_PUBKEY",
            getenv("SPANK_SHIFTER_SSH_PUBKEY"));
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SHIFTER_ENABLE_CCM", enable_ccm ? "1" : "0");
    add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SPANK_SHIFTER_CCM", getenv("SPANK_SHIFTER_CCM"));
    if (memory_cgroup[0] != '\0')
        add_env(envp, &n, bufs[n], sizeof(bufs[0]), "SHIFTER_MEMORY_CGROUP", memory_cgroup);
    envp[n] = NULL;
    static char out[16384];
    char *argv[] = {SHIFTER_HOOK, (char *)what, config, NULL};
    int status = run_hook(argv, envp, out, sizeof(out), 1);
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n"))
        slurm_info("shifter %s job %u: %s", what, job_id, line);
    if (status != 0)
        slurm_error("shifter: %s of job %u failed (status %d)", what, job_id, status);
    return 0;  /* never drain the node: a failure is reported to the job's tasks */
}

/* slurmstepd's prolog and epilog do not run slurm_spank_init: the arguments come here. */
int slurm_spank_job_prolog(spank_t sp, int ac, char **av) {
    if (parse_args(ac, av) != 0) return 0;
    return job_script(sp, "prolog");
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av) {
    if (parse_args(ac, av) != 0) return 0;
    return job_script(sp, "epilog");
}

/* This node's name as the prolog saw it (SLURMD_NODENAME), else the host's; 0 when usable
 * in a record path. */
static int node_name(spank_t sp, char *node, size_t size) {
    if (spank_getenv(sp, "SLURMD_NODENAME", node, size) != ESPANK_SUCCESS &&
        gethostname(node, size) != 0)
        return -1;
    return strchr(node, '/') == NULL ? 0 : -1;
}

/* Read this job's record SUFFIX on this node (SHIFTER_STATE_DIR/NODE/job_ID.SUFFIX, written
 * by the prolog as root) into `text`; 0 if there is one. */
static int job_record(spank_t sp, const char *suffix, char *text, size_t size) {
    uint32_t job_id = 0;
    char node[256] = "", path[512];
    if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS) return -1;
    if (node_name(sp, node, sizeof(node)) != 0) return -1;
    snprintf(path, sizeof(path), "%s/%s/job_%u.%s", SHIFTER_STATE_DIR, node, job_id, suffix);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    struct stat st;
    ssize_t got = fstat(fd, &st) == 0 && st.st_uid == 0 ? read(fd, text, size - 1) : -1;
    close(fd);
    text[got > 0 ? got : 0] = '\0';
    return got < 0 ? -1 : 0;
}

/* --ccm: the task goes into the job's container (udiMount, which the prolog's record
 * names) while still root; slurmstepd then becomes the user and changes to the job's
 * working directory inside it (or /tmp). The working directory is kept here too, reached
 * as the user (a root-squashed home is readable only by its owner). */
static int enter_ccm(spank_t sp) {
    char root[VALUE_MAX], cwd[VALUE_MAX];
    if (job_record(sp, "ccm", root, sizeof(root)) != 0) return 0;
    root[strcspn(root, "\n")] = '\0';
    if (root[0] != '/') return 0;
    uid_t uid;
    gid_t gid;
    if (spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS || uid == 0)
        return -1;
    if (getcwd(cwd, sizeof(cwd)) == NULL) cwd[0] = '\0';
    if (chdir(root) != 0 || chroot(".") != 0) {
        slurm_error("shifter: --ccm: cannot enter the job's container %s: %m", root);
        return -1;
    }
    if (setegid(gid) != 0 || seteuid(uid) != 0) return -1;
    int in_cwd = cwd[0] != '\0' && chdir(cwd) == 0;
    if (seteuid(0) != 0 || setegid(0) != 0) return -1;
    if (!in_cwd && chdir("/tmp") != 0 && chdir("/") != 0) return -1;
    return 0;
}

/* With extern_cgroup or extern_setup, a task of a job whose container this node built
 * starts once the extern step has done its part (its record job_ID.extern), or after
 * EXTERN_WAIT_S: only on the batch node does Slurm order prolog, extern step, job. */
static void wait_for_extern(spank_t sp) {
    char text[64];
    if (!extern_cgroup && extern_setup[0] == '\0') return;
    if (job_record(sp, "setup", text, sizeof(text)) != 0) return;
    for (int tenth = 0; tenth < EXTERN_WAIT_S * 10; tenth++) {
        if (job_record(sp, "extern", text, sizeof(text)) == 0) return;
        usleep(100000);
    }
    slurm_info("shifter: the job's extern step did not finish in %d s; the task starts",
               EXTERN_WAIT_S);
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av) {
    (void)ac; (void)av;
    uint32_t step_id = 0;
    /* The extern step's own process holds the step open: it stays on the host. */
    if (spank_get_item(sp, S_JOB_STEPID, &step_id) == ESPANK_SUCCESS &&
        step_id == SLURM_EXTERN_CONT)
        return 0;
    wait_for_extern(sp);
    return enter_ccm(sp);
}

/* A task of a job whose container could not be prepared on this node fails with the
 * prolog's reason (SHIFTER_STATE_DIR/NODE/job_ID.failed, written by the prolog). */
int slurm_spank_task_init(spank_t sp, int ac, char **av) {
    (void)ac; (void)av;
    char reason[2048];
    if (job_record(sp, "failed", reason, sizeof(reason)) != 0) return 0;
    fprintf(stderr, "shifter: %s", reason[0] ? reason : "the job's container failed\n");
    fflush(stderr);
    return -1;
}

/* extern_cgroup=1: the extern step's slurmstepd runs this once per node, after the prolog
 * and after making the step's cgroups; for a job whose container this node built
 * (SHIFTER_STATE_DIR/NODE/job_ID.setup), `HOOK extern CONFIG` moves the job's sshd and its
 * sessions into them, so Slurm ends them with the job. */
int slurm_spank_task_post_fork(spank_t sp, int ac, char **av) {
    (void)ac; (void)av;
    uint32_t job_id = 0, step_id = 0;
    uid_t uid = 0;
    char node[256] = "", setup[64];
    if ((!extern_cgroup && extern_setup[0] == '\0') || spank_remote(sp) != 1) return 0;
    if (spank_get_item(sp, S_JOB_STEPID, &step_id) != ESPANK_SUCCESS ||
        step_id != SLURM_EXTERN_CONT)
        return 0;
    if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
        node_name(sp, node, sizeof(node)) != 0 ||
        job_record(sp, "setup", setup, sizeof(setup)) != 0)
        return 0;
    static char env[6][VALUE_MAX + 32];
    char *envp[] = {env[0], env[1], env[2], env[3], env[4], env[5], NULL};
    snprintf(env[0], sizeof(env[0]), "PATH=/usr/bin:/usr/sbin:/bin:/sbin");
    snprintf(env[1], sizeof(env[0]), "SLURM_JOB_ID=%u", job_id);
    snprintf(env[2], sizeof(env[0]), "SLURM_JOB_UID=%u", (unsigned)uid);
    snprintf(env[3], sizeof(env[0]), "SLURMD_NODENAME=%s", node);
    snprintf(env[4], sizeof(env[0]), "SHIFTER_EXTERN_CGROUP=%d", extern_cgroup);
    snprintf(env[5], sizeof(env[0]), "SHIFTER_EXTERN_SETUP=%s", extern_setup);
    static char out[4096];
    char *argv[] = {SHIFTER_HOOK, "extern", config, NULL};
    int status = run_hook(argv, envp, out, sizeof(out), 1);
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n"))
        slurm_info("shifter extern job %u: %s", job_id, line);
    if (status != 0)
        slurm_error("shifter: extern step of job %u: the hook failed (status %d)", job_id,
                    status);
    return 0;  /* the epilog still ends what is left */
}
