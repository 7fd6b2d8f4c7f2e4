/*
 * FAKE libnvidia-ml.so.1 for FLARE's tests. It is not NVIDIA's library and
 * talks to no hardware: it implements the handful of NVML C entry points that
 * the nvidia-ml-py bindings call for FLARE's NVML probe, with the signatures
 * and structure layouts of the public NVML API, and answers from a key=value
 * file named by the environment variable FLARE_FAKE_NVML_CONFIG.
 *
 * Config file (one "key = value" per line, '#' starts a comment):
 *   driver_version = 550.54.15        cuda_driver_version = 12040
 *   gpus = 8                          number of simulated GPUs (max 16)
 *   gpu.*.<field> = value             a default for every GPU
 *   gpu.<index>.<field> = value       one GPU (applied after the defaults)
 * Fields: name, uuid, memory_mib, cc ("9.0"), architecture (NVML enum value),
 *   pci_bus_id, numa (-1: not supported), power_limit_w, utilization,
 *   memory_utilization, memory_used_mib, temperature, power_w, sm_clock,
 *   clocks_event_reasons, ecc (0/1), ecc_corrected, ecc_uncorrectable,
 *   nvlinks (active links, all to NVSwitches), mig (0/1),
 *   mig_instances ("3g.40gb:40192,1g.10gb:9856"), processes ("pid:mib,..."),
 *   lost_after_calls (-1: never), fallen_off_bus (0/1), xid (0: none),
 *   not_supported (comma list of: utilization, temperature, power, clocks,
 *   throttle, ecc, processes, numa, power_limit, architecture, topology).
 *
 * Failure injection:
 *   lost_after_calls = N  after N calls on that GPU every call answers
 *                         NVML_ERROR_GPU_IS_LOST, and it stays lost across
 *                         nvmlShutdown/nvmlInit (as a real lost GPU does).
 *   fallen_off_bus = 1    identity calls still answer (the driver keeps them),
 *                         telemetry answers NVML_ERROR_UNKNOWN, and Xid 79 is
 *                         queued once on the first event set it is registered on.
 *   xid = N               Xid N is queued once on the first event set the GPU
 *                         is registered on for critical Xid events.
 *   fail = <entry point>:<code>[:<after calls>]   that exported function answers
 *                         NVML error <code> (for every GPU) once it has been
 *                         called <after calls> times (default 0); several may be
 *                         given, comma separated. At run time the same from
 *                         fakeNvmlInject(entry point, code, after) (code 0
 *                         clears every injection), and fakeNvmlInjectedHits()
 *                         tells how many calls the injections failed.
 *   MIG parents always answer NOT_SUPPORTED for utilisation.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OK 0
#define E_UNINITIALIZED 1
#define E_INVALID_ARGUMENT 2
#define E_NOT_SUPPORTED 3
#define E_NOT_FOUND 6
#define E_INSUFFICIENT_SIZE 7
#define E_NO_PERMISSION 4
#define E_DRIVER_NOT_LOADED 9
#define E_TIMEOUT 10
#define E_IRQ_ISSUE 11
#define E_GPU_IS_LOST 15
#define E_RESET_REQUIRED 16
#define E_NO_DATA 21
#define E_ARGUMENT_VERSION_MISMATCH 25
#define E_UNKNOWN 999
#define MAX_INJECTIONS 16

#define MAX_GPUS 16
#define MAX_MIG 7
#define MAX_PROCS 8
#define MAX_LINKS 36
#define MAX_EVENTS 64
#define EVENT_XID 0x8ULL
#define TEMPERATURE_V1 0x100000CU
#define MIB (1024ULL * 1024ULL)

typedef struct fake_handle fake_handle;

typedef struct {
    char profile[32];
    unsigned long long memory_mib;
} fake_mig_spec;

struct fake_handle {
    int gpu;      /* index of the physical GPU */
    int mig;      /* -1 for the physical GPU, else the MIG slot */
};

typedef struct {
    char name[96];
    char uuid[96];
    char pci_bus_id[32];
    unsigned long long memory_mib, memory_used_mib;
    int cc_major, cc_minor, architecture, numa;
    unsigned power_limit_w, utilization, memory_utilization, temperature, power_w;
    unsigned sm_clock;
    unsigned long long clocks_event_reasons, ecc_corrected, ecc_uncorrectable;
    int ecc, nvlinks, mig, mig_count, proc_count;
    fake_mig_spec mig_instances[MAX_MIG];
    unsigned proc_pid[MAX_PROCS];
    unsigned long long proc_mib[MAX_PROCS];
    long lost_after_calls;
    int fallen_off_bus, xid, xid_delivered;
    char not_supported[256];
    long calls;
    fake_handle self;
    fake_handle mig_handles[MAX_MIG];
} fake_gpu;

typedef struct {
    fake_handle *device;
    unsigned long long type, data;
} fake_event;

typedef struct {
    fake_event queue[MAX_EVENTS];
    int head, tail;
} fake_event_set;

/* nvmlEventData_t as NVML lays it out. */
typedef struct {
    fake_handle *device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned gpuInstanceId;
    unsigned computeInstanceId;
} nvml_event_data;

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvml_pci_info;

typedef struct {
    unsigned long long total, free, used;
} nvml_memory;

typedef struct {
    unsigned gpu, memory;
} nvml_utilization;

typedef struct {
    unsigned version, sensorType;
    int temperature;
} nvml_temperature_v1;

typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvml_process_info;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t events_queued = PTHREAD_COND_INITIALIZER;
static int loaded;     /* config read (once per process) */
static int init_count; /* nvmlInit minus nvmlShutdown */
static int gpu_count;
static char driver_version[80] = "550.54.15";
static int cuda_driver_version = 12040;
static fake_gpu gpus[MAX_GPUS];

typedef struct {
    char function[64];
    int code;
    long after, calls;
} fake_injection;

static fake_injection injections[MAX_INJECTIONS];
static int injection_count;
static long injected_hits;

static void trim(char *s) {
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    size_t lead = strspn(s, " \t");
    if (lead) memmove(s, s + lead, strlen(s + lead) + 1);
}

static void copy_text(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src);
}

static void set_field(fake_gpu *g, const char *field, const char *value) {
    if (!strcmp(field, "name")) copy_text(g->name, sizeof g->name, value);
    else if (!strcmp(field, "uuid")) copy_text(g->uuid, sizeof g->uuid, value);
    else if (!strcmp(field, "pci_bus_id")) copy_text(g->pci_bus_id, sizeof g->pci_bus_id, value);
    else if (!strcmp(field, "memory_mib")) g->memory_mib = strtoull(value, NULL, 10);
    else if (!strcmp(field, "memory_used_mib")) g->memory_used_mib = strtoull(value, NULL, 10);
    else if (!strcmp(field, "cc")) sscanf(value, "%d.%d", &g->cc_major, &g->cc_minor);
    else if (!strcmp(field, "architecture")) g->architecture = atoi(value);
    else if (!strcmp(field, "numa")) g->numa = atoi(value);
    else if (!strcmp(field, "power_limit_w")) g->power_limit_w = (unsigned)atoi(value);
    else if (!strcmp(field, "utilization")) g->utilization = (unsigned)atoi(value);
    else if (!strcmp(field, "memory_utilization")) g->memory_utilization = (unsigned)atoi(value);
    else if (!strcmp(field, "temperature")) g->temperature = (unsigned)atoi(value);
    else if (!strcmp(field, "power_w")) g->power_w = (unsigned)atoi(value);
    else if (!strcmp(field, "sm_clock")) g->sm_clock = (unsigned)atoi(value);
    else if (!strcmp(field, "clocks_event_reasons"))
        g->clocks_event_reasons = strtoull(value, NULL, 0);
    else if (!strcmp(field, "ecc")) g->ecc = atoi(value);
    else if (!strcmp(field, "ecc_corrected")) g->ecc_corrected = strtoull(value, NULL, 10);
    else if (!strcmp(field, "ecc_uncorrectable"))
        g->ecc_uncorrectable = strtoull(value, NULL, 10);
    else if (!strcmp(field, "nvlinks")) g->nvlinks = atoi(value);
    else if (!strcmp(field, "mig")) g->mig = atoi(value);
    else if (!strcmp(field, "lost_after_calls")) g->lost_after_calls = atol(value);
    else if (!strcmp(field, "fallen_off_bus")) g->fallen_off_bus = atoi(value);
    else if (!strcmp(field, "xid")) g->xid = atoi(value);
    else if (!strcmp(field, "not_supported"))
        copy_text(g->not_supported, sizeof g->not_supported, value);
    else if (!strcmp(field, "mig_instances")) {
        char buf[512];
        copy_text(buf, sizeof buf, value);
        g->mig_count = 0;
        for (char *save = NULL, *item = strtok_r(buf, ",", &save);
             item && g->mig_count < MAX_MIG; item = strtok_r(NULL, ",", &save)) {
            fake_mig_spec *m = &g->mig_instances[g->mig_count++];
            char *colon = strchr(item, ':');
            if (colon) {
                *colon = '\0';
                m->memory_mib = strtoull(colon + 1, NULL, 10);
            }
            trim(item);
            copy_text(m->profile, sizeof m->profile, item);
        }
    } else if (!strcmp(field, "processes")) {
        char buf[512];
        copy_text(buf, sizeof buf, value);
        g->proc_count = 0;
        for (char *save = NULL, *item = strtok_r(buf, ",", &save);
             item && g->proc_count < MAX_PROCS; item = strtok_r(NULL, ",", &save)) {
            unsigned pid = 0;
            unsigned long long mib = 0;
            if (sscanf(item, " %u:%llu", &pid, &mib) == 2) {
                g->proc_pid[g->proc_count] = pid;
                g->proc_mib[g->proc_count++] = mib;
            }
        }
    } else fprintf(stderr, "fake NVML: unknown field %s ignored\n", field);
}

static void set_defaults(int i) {
    fake_gpu *g = &gpus[i];
    memset(g, 0, sizeof *g);
    copy_text(g->name, sizeof g->name, "Fake NVML GPU");
    g->memory_mib = 16384;
    g->cc_major = 8;
    g->architecture = 7;
    g->power_limit_w = 300;
    g->temperature = 40;
    g->power_w = 100;
    g->sm_clock = 1410;
    g->ecc = 1;
    g->lost_after_calls = -1;
    g->self.gpu = i;
    g->self.mig = -1;
    for (int m = 0; m < MAX_MIG; m++) {
        g->mig_handles[m].gpu = i;
        g->mig_handles[m].mig = m;
    }
}

static void inject(const char *function, int code, long after) {
    if (!code) {
        injection_count = 0;
        return;
    }
    if (injection_count == MAX_INJECTIONS) return;
    fake_injection *in = &injections[injection_count++];
    copy_text(in->function, sizeof in->function, function);
    in->code = code;
    in->after = after < 0 ? 0 : after;
    in->calls = 0;
}

/* "fn:code[:after],fn:code..." from the config. */
static void add_injections(const char *value) {
    char buf[1024];
    copy_text(buf, sizeof buf, value);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *code = strchr(item, ':');
        if (!code) continue;
        *code++ = '\0';
        char *after = strchr(code, ':');
        if (after) *after++ = '\0';
        trim(item);
        inject(item, atoi(code), after ? atol(after) : 0);
    }
}

/* The error an injection makes `function` answer now, or OK. */
static int injected(const char *function) {
    for (int i = 0; i < injection_count; i++) {
        fake_injection *in = &injections[i];
        if (strcmp(in->function, function)) continue;
        if (in->calls++ >= in->after) {
            injected_hits++;
            return in->code;
        }
    }
    return OK;
}

/* Reads the config: globals and gpu.* in a first pass, gpu.<n> in a second. */
static int load_config(void) {
    const char *path = getenv("FLARE_FAKE_NVML_CONFIG");
    if (!path || !*path) {
        fprintf(stderr, "fake NVML: FLARE_FAKE_NVML_CONFIG is not set\n");
        return E_DRIVER_NOT_LOADED;
    }
    for (int pass = 0; pass < 2; pass++) {
        FILE *f = fopen(path, "r");
        if (!f) {
            fprintf(stderr, "fake NVML: cannot open %s\n", path);
            return E_DRIVER_NOT_LOADED;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char *hash = strchr(line, '#');
            if (hash) *hash = '\0';
            char *eq = strchr(line, '=');
            if (!eq) continue;
            *eq = '\0';
            char *key = line, *value = eq + 1;
            trim(key);
            trim(value);
            if (!strncmp(key, "gpu.", 4)) {
                char *dot = strchr(key + 4, '.');
                if (!dot) continue;
                *dot = '\0';
                int all = !strcmp(key + 4, "*");
                if (pass == 0 && all) {
                    for (int i = 0; i < MAX_GPUS; i++) set_field(&gpus[i], dot + 1, value);
                } else if (pass == 1 && !all) {
                    int i = atoi(key + 4);
                    if (i >= 0 && i < MAX_GPUS) set_field(&gpus[i], dot + 1, value);
                }
            } else if (pass == 0) {
                if (!strcmp(key, "gpus")) gpu_count = atoi(value);
                else if (!strcmp(key, "driver_version"))
                    copy_text(driver_version, sizeof driver_version, value);
                else if (!strcmp(key, "cuda_driver_version")) cuda_driver_version = atoi(value);
                else if (!strcmp(key, "fail")) add_injections(value);
            }
        }
        fclose(f);
        if (pass == 0) {
            /* Per-GPU values filled in where the file gave none. */
            for (int i = 0; i < MAX_GPUS; i++) {
                fake_gpu *g = &gpus[i];
                if (!g->uuid[0])
                    snprintf(g->uuid, sizeof g->uuid,
                             "GPU-fa4e0000-0000-4000-8000-%012x", (unsigned)i + 1);
                if (!g->pci_bus_id[0])
                    snprintf(g->pci_bus_id, sizeof g->pci_bus_id, "00000000:%02X:00.0",
                             0x18 + i * 0x10);
            }
        }
    }
    if (gpu_count < 0) gpu_count = 0;
    if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
    return OK;
}

static int unsupported(const fake_gpu *g, const char *what) {
    char buf[256];
    copy_text(buf, sizeof buf, g->not_supported);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        trim(item);
        if (!strcmp(item, what)) return 1;
    }
    return 0;
}

/* Validates a handle and counts the call against the GPU's lost budget. */
static int enter(fake_handle *h, fake_gpu **out) {
    if (!init_count) return E_UNINITIALIZED;
    if (!h || h->gpu < 0 || h->gpu >= gpu_count) return E_INVALID_ARGUMENT;
    fake_gpu *g = &gpus[h->gpu];
    if (h != &g->self && (h->mig < 0 || h->mig >= g->mig_count || h != &g->mig_handles[h->mig]))
        return E_INVALID_ARGUMENT;
    g->calls++;
    if (g->lost_after_calls >= 0 && g->calls > g->lost_after_calls) return E_GPU_IS_LOST;
    *out = g;
    return OK;
}

/* For telemetry: a fallen-off-the-bus GPU answers only identity calls. */
static int telemetry(fake_handle *h, fake_gpu **out) {
    int rc = enter(h, out);
    if (rc == OK && (*out)->fallen_off_bus) return E_UNKNOWN;
    return rc;
}

/* Runs an entry point's body under the lock, unless an injection fails it. */
#define LOCKED(expr)                                \
    do {                                            \
        pthread_mutex_lock(&lock);                  \
        int rc_ = load_once() == OK ? injected(__func__) : OK; \
        if (rc_ == OK) rc_ = (expr);                \
        pthread_mutex_unlock(&lock);                \
        return rc_;                                 \
    } while (0)

void fakeNvmlInject(const char *function, int code, long after) {
    pthread_mutex_lock(&lock);
    inject(function, code, after);
    pthread_mutex_unlock(&lock);
}

long fakeNvmlInjectedHits(void) {
    pthread_mutex_lock(&lock);
    long hits = injected_hits;
    pthread_mutex_unlock(&lock);
    return hits;
}

/* ---- library lifecycle ---- */

static int load_once(void) {
    if (!loaded) {
        for (int i = 0; i < MAX_GPUS; i++) set_defaults(i);
        int rc = load_config();
        if (rc != OK) return rc;
        loaded = 1;
    }
    return OK;
}

static int do_init(void) {
    int rc = load_once();
    if (rc != OK) return rc;
    init_count++;
    return OK;
}

int nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    LOCKED(do_init());
}

int nvmlInit_v2(void) { LOCKED(do_init()); }

static int do_shutdown(void) {
    if (!init_count) return E_UNINITIALIZED;
    init_count--;
    return OK;
}

int nvmlShutdown(void) { LOCKED(do_shutdown()); }

const char *nvmlErrorString(int result) {
    switch (result) {
    case OK: return "Success";
    case E_UNINITIALIZED: return "Uninitialized";
    case E_INVALID_ARGUMENT: return "Invalid Argument";
    case E_NOT_SUPPORTED: return "Not Supported";
    case E_NOT_FOUND: return "Not Found";
    case E_INSUFFICIENT_SIZE: return "Insufficient Size";
    case E_NO_PERMISSION: return "Insufficient Permissions";
    case E_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case E_TIMEOUT: return "Timeout";
    case E_IRQ_ISSUE: return "Interrupt request issue";
    case E_GPU_IS_LOST: return "GPU is lost";
    case E_RESET_REQUIRED: return "GPU requires reset";
    case E_NO_DATA: return "No data";
    case E_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

/* ---- system ---- */

static int copy_out(char *dst, unsigned length, const char *src) {
    if (!dst) return E_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return E_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return OK;
}

static int system_driver_version(char *version, unsigned length) {
    if (!init_count) return E_UNINITIALIZED;
    return copy_out(version, length, driver_version);
}

int nvmlSystemGetDriverVersion(char *version, unsigned length) {
    LOCKED(system_driver_version(version, length));
}

static int system_cuda_version(int *version) {
    if (!init_count) return E_UNINITIALIZED;
    if (!version) return E_INVALID_ARGUMENT;
    *version = cuda_driver_version;
    return OK;
}

int nvmlSystemGetCudaDriverVersion(int *version) { LOCKED(system_cuda_version(version)); }

/* ---- enumeration ---- */

static int device_count(unsigned *count) {
    if (!init_count) return E_UNINITIALIZED;
    if (!count) return E_INVALID_ARGUMENT;
    *count = (unsigned)gpu_count;
    return OK;
}

int nvmlDeviceGetCount_v2(unsigned *count) { LOCKED(device_count(count)); }

static int handle_by_index(unsigned index, fake_handle **out) {
    if (!init_count) return E_UNINITIALIZED;
    if (!out || index >= (unsigned)gpu_count) return E_INVALID_ARGUMENT;
    fake_gpu *g;
    int rc = enter(&gpus[index].self, &g);
    if (rc != OK) return rc;
    *out = &g->self;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, fake_handle **out) {
    LOCKED(handle_by_index(index, out));
}

/* ---- identity ---- */

static int get_name(fake_handle *h, char *name, unsigned length) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (h->mig < 0) return copy_out(name, length, g->name);
    char buf[160];
    snprintf(buf, sizeof buf, "%s MIG %s", g->name, g->mig_instances[h->mig].profile);
    return copy_out(name, length, buf);
}

int nvmlDeviceGetName(fake_handle *h, char *name, unsigned length) {
    LOCKED(get_name(h, name, length));
}

static int get_uuid(fake_handle *h, char *uuid, unsigned length) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (h->mig < 0) return copy_out(uuid, length, g->uuid);
    char buf[128];
    snprintf(buf, sizeof buf, "MIG-fa4e%04x-0000-4000-8000-%012x", (unsigned)h->gpu,
             (unsigned)h->mig + 1);
    return copy_out(uuid, length, buf);
}

int nvmlDeviceGetUUID(fake_handle *h, char *uuid, unsigned length) {
    LOCKED(get_uuid(h, uuid, length));
}

static int get_memory(fake_handle *h, nvml_memory *memory) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (!memory) return E_INVALID_ARGUMENT;
    unsigned long long total = g->memory_mib, used = g->memory_used_mib;
    if (h->mig >= 0) {
        total = g->mig_instances[h->mig].memory_mib;
        used = 0;
    }
    if (used > total) used = total;
    memory->total = total * MIB;
    memory->used = used * MIB;
    memory->free = (total - used) * MIB;
    return OK;
}

int nvmlDeviceGetMemoryInfo(fake_handle *h, nvml_memory *memory) {
    LOCKED(get_memory(h, memory));
}

static int get_cc(fake_handle *h, int *major, int *minor) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (!major || !minor) return E_INVALID_ARGUMENT;
    *major = g->cc_major;
    *minor = g->cc_minor;
    return OK;
}

int nvmlDeviceGetCudaComputeCapability(fake_handle *h, int *major, int *minor) {
    LOCKED(get_cc(h, major, minor));
}

static int get_architecture(fake_handle *h, unsigned *arch) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (unsupported(g, "architecture")) return E_NOT_SUPPORTED;
    if (!arch) return E_INVALID_ARGUMENT;
    *arch = (unsigned)g->architecture;
    return OK;
}

int nvmlDeviceGetArchitecture(fake_handle *h, unsigned *arch) {
    LOCKED(get_architecture(h, arch));
}

static void fill_pci(nvml_pci_info *pci, const char *bus_id) {
    memset(pci, 0, sizeof *pci);
    unsigned domain = 0, bus = 0, device = 0;
    sscanf(bus_id, "%x:%x:%x", &domain, &bus, &device);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = device;
    pci->pciDeviceId = 0x10de0000U;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", domain, bus, device);
    copy_text(pci->busId, sizeof pci->busId, bus_id);
}

static int get_pci(fake_handle *h, nvml_pci_info *pci) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (!pci) return E_INVALID_ARGUMENT;
    fill_pci(pci, g->pci_bus_id);
    return OK;
}

int nvmlDeviceGetPciInfo_v3(fake_handle *h, nvml_pci_info *pci) { LOCKED(get_pci(h, pci)); }

static int get_numa(fake_handle *h, int *node) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (g->numa < 0 || unsupported(g, "numa")) return E_NOT_SUPPORTED;
    if (!node) return E_INVALID_ARGUMENT;
    *node = g->numa;
    return OK;
}

int nvmlDeviceGetNumaNodeId(fake_handle *h, int *node) { LOCKED(get_numa(h, node)); }

static int get_power_limit(fake_handle *h, unsigned *limit) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (unsupported(g, "power_limit")) return E_NOT_SUPPORTED;
    if (!limit) return E_INVALID_ARGUMENT;
    *limit = g->power_limit_w * 1000U;
    return OK;
}

int nvmlDeviceGetEnforcedPowerLimit(fake_handle *h, unsigned *limit) {
    LOCKED(get_power_limit(h, limit));
}

/* ---- MIG ---- */

static int get_mig_mode(fake_handle *h, unsigned *current, unsigned *pending) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (h->mig >= 0 || g->cc_major < 8) return E_NOT_SUPPORTED;
    if (!current || !pending) return E_INVALID_ARGUMENT;
    *current = *pending = g->mig ? 1U : 0U;
    return OK;
}

int nvmlDeviceGetMigMode(fake_handle *h, unsigned *current, unsigned *pending) {
    LOCKED(get_mig_mode(h, current, pending));
}

static int get_max_mig(fake_handle *h, unsigned *count) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (h->mig >= 0 || !g->mig) return E_NOT_SUPPORTED;
    if (!count) return E_INVALID_ARGUMENT;
    *count = MAX_MIG;
    return OK;
}

int nvmlDeviceGetMaxMigDeviceCount(fake_handle *h, unsigned *count) {
    LOCKED(get_max_mig(h, count));
}

static int get_mig_handle(fake_handle *h, unsigned index, fake_handle **out) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (h->mig >= 0 || !g->mig) return E_NOT_SUPPORTED;
    if (!out || index >= MAX_MIG) return E_INVALID_ARGUMENT;
    if (index >= (unsigned)g->mig_count) return E_NOT_FOUND;
    *out = &g->mig_handles[index];
    return OK;
}

int nvmlDeviceGetMigDeviceHandleByIndex(fake_handle *h, unsigned index, fake_handle **out) {
    LOCKED(get_mig_handle(h, index, out));
}

/* ---- topology and NVLink ---- */

static int common_ancestor(fake_handle *a, fake_handle *b, unsigned *level) {
    fake_gpu *ga, *gb;
    int rc = enter(a, &ga);
    if (rc != OK) return rc;
    rc = enter(b, &gb);
    if (rc != OK) return rc;
    if (unsupported(ga, "topology") || unsupported(gb, "topology")) return E_NOT_SUPPORTED;
    if (!level) return E_INVALID_ARGUMENT;
    if (ga == gb) *level = 0;                                  /* INTERNAL */
    else if (ga->numa >= 0 && ga->numa == gb->numa) *level = 40; /* NODE */
    else *level = 50;                                          /* SYSTEM */
    return OK;
}

int nvmlDeviceGetTopologyCommonAncestor(fake_handle *a, fake_handle *b, unsigned *level) {
    LOCKED(common_ancestor(a, b, level));
}

static int nvlink_state(fake_handle *h, unsigned link, unsigned *active) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (!active || link >= MAX_LINKS) return E_INVALID_ARGUMENT;
    if (g->nvlinks == 0) return E_NOT_SUPPORTED;
    if (link >= (unsigned)g->nvlinks) return E_INVALID_ARGUMENT;
    *active = 1;
    return OK;
}

int nvmlDeviceGetNvLinkState(fake_handle *h, unsigned link, unsigned *active) {
    LOCKED(nvlink_state(h, link, active));
}

static int nvlink_remote(fake_handle *h, unsigned link, nvml_pci_info *pci) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (!pci || link >= (unsigned)g->nvlinks) return E_INVALID_ARGUMENT;
    /* Every link goes to one of four NVSwitches. */
    char bus_id[32];
    snprintf(bus_id, sizeof bus_id, "00000000:%02X:00.0", 0xC0 + link % 4);
    fill_pci(pci, bus_id);
    return OK;
}

int nvmlDeviceGetNvLinkRemotePciInfo_v2(fake_handle *h, unsigned link, nvml_pci_info *pci) {
    LOCKED(nvlink_remote(h, link, pci));
}

/* ---- telemetry ---- */

static int get_utilization(fake_handle *h, nvml_utilization *u) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (g->mig || h->mig >= 0 || unsupported(g, "utilization")) return E_NOT_SUPPORTED;
    if (!u) return E_INVALID_ARGUMENT;
    u->gpu = g->utilization;
    u->memory = g->memory_utilization;
    return OK;
}

int nvmlDeviceGetUtilizationRates(fake_handle *h, nvml_utilization *u) {
    LOCKED(get_utilization(h, u));
}

static int get_temperature(fake_handle *h, nvml_temperature_v1 *t) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (!t) return E_INVALID_ARGUMENT;
    if (t->version != TEMPERATURE_V1) return E_ARGUMENT_VERSION_MISMATCH;
    if (t->sensorType != 0 || unsupported(g, "temperature")) return E_NOT_SUPPORTED;
    t->temperature = (int)g->temperature;
    return OK;
}

int nvmlDeviceGetTemperatureV(fake_handle *h, nvml_temperature_v1 *t) {
    LOCKED(get_temperature(h, t));
}

static int get_power(fake_handle *h, unsigned *milliwatts) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (unsupported(g, "power")) return E_NOT_SUPPORTED;
    if (!milliwatts) return E_INVALID_ARGUMENT;
    *milliwatts = g->power_w * 1000U;
    return OK;
}

int nvmlDeviceGetPowerUsage(fake_handle *h, unsigned *milliwatts) {
    LOCKED(get_power(h, milliwatts));
}

static int get_clock(fake_handle *h, unsigned type, unsigned *mhz) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (type != 1 || unsupported(g, "clocks")) return E_NOT_SUPPORTED; /* only NVML_CLOCK_SM */
    if (!mhz) return E_INVALID_ARGUMENT;
    *mhz = g->sm_clock;
    return OK;
}

int nvmlDeviceGetClockInfo(fake_handle *h, unsigned type, unsigned *mhz) {
    LOCKED(get_clock(h, type, mhz));
}

static int get_reasons(fake_handle *h, unsigned long long *reasons) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (unsupported(g, "throttle")) return E_NOT_SUPPORTED;
    if (!reasons) return E_INVALID_ARGUMENT;
    *reasons = g->clocks_event_reasons;
    return OK;
}

int nvmlDeviceGetCurrentClocksEventReasons(fake_handle *h, unsigned long long *reasons) {
    LOCKED(get_reasons(h, reasons));
}

static int get_ecc(fake_handle *h, unsigned type, unsigned counter, unsigned long long *count) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (!g->ecc || unsupported(g, "ecc")) return E_NOT_SUPPORTED;
    if (!count || type > 1 || counter > 1) return E_INVALID_ARGUMENT;
    *count = type == 1 ? g->ecc_uncorrectable : g->ecc_corrected;
    return OK;
}

int nvmlDeviceGetTotalEccErrors(fake_handle *h, unsigned type, unsigned counter,
                                unsigned long long *count) {
    LOCKED(get_ecc(h, type, counter, count));
}

static int get_processes(fake_handle *h, unsigned *count, nvml_process_info *infos) {
    fake_gpu *g;
    int rc = telemetry(h, &g);
    if (rc != OK) return rc;
    if (unsupported(g, "processes")) return E_NOT_SUPPORTED;
    if (!count) return E_INVALID_ARGUMENT;
    unsigned room = *count;
    *count = (unsigned)g->proc_count;
    if (g->proc_count == 0) return OK;
    if (!infos || room < (unsigned)g->proc_count) return E_INSUFFICIENT_SIZE;
    for (int i = 0; i < g->proc_count; i++) {
        infos[i].pid = g->proc_pid[i];
        infos[i].usedGpuMemory = g->proc_mib[i] * MIB;
        infos[i].gpuInstanceId = 0xFFFFFFFFU;
        infos[i].computeInstanceId = 0xFFFFFFFFU;
    }
    return OK;
}

int nvmlDeviceGetComputeRunningProcesses_v3(fake_handle *h, unsigned *count,
                                            nvml_process_info *infos) {
    LOCKED(get_processes(h, count, infos));
}

/* ---- events ---- */

static int event_set_create(fake_event_set **out) {
    if (!init_count) return E_UNINITIALIZED;
    if (!out) return E_INVALID_ARGUMENT;
    fake_event_set *set = calloc(1, sizeof *set);
    if (!set) return E_UNKNOWN;
    *out = set;
    return OK;
}

int nvmlEventSetCreate(fake_event_set **out) { LOCKED(event_set_create(out)); }

static int register_events(fake_handle *h, unsigned long long types, fake_event_set *set) {
    fake_gpu *g;
    int rc = enter(h, &g);
    if (rc != OK) return rc;
    if (!set || h->mig >= 0) return E_INVALID_ARGUMENT;
    int xid = g->xid ? g->xid : (g->fallen_off_bus ? 79 : 0);
    if ((types & EVENT_XID) && xid && !g->xid_delivered) {
        int next = (set->tail + 1) % MAX_EVENTS;
        if (next != set->head) {
            set->queue[set->tail] = (fake_event){&g->self, EVENT_XID, (unsigned long long)xid};
            set->tail = next;
            g->xid_delivered = 1;
        }
    }
    return OK;
}

int nvmlDeviceRegisterEvents(fake_handle *h, unsigned long long types, fake_event_set *set) {
    pthread_mutex_lock(&lock);
    int rc = injected(__func__);
    if (rc == OK) rc = register_events(h, types, set);
    pthread_cond_broadcast(&events_queued);
    pthread_mutex_unlock(&lock);
    return rc;
}

static int take_event(fake_event_set *set, nvml_event_data *data) {
    if (!init_count) return E_UNINITIALIZED;
    if (set->head == set->tail) return E_TIMEOUT;
    fake_event *e = &set->queue[set->head];
    set->head = (set->head + 1) % MAX_EVENTS;
    data->device = e->device;
    data->eventType = e->type;
    data->eventData = e->data;
    data->gpuInstanceId = 0xFFFFFFFFU;
    data->computeInstanceId = 0xFFFFFFFFU;
    return OK;
}

/* Blocks like the real call (which sleeps in the driver): a condition variable
 * woken when events are queued, not a polling loop. */
int nvmlEventSetWait_v2(fake_event_set *set, nvml_event_data *data, unsigned timeout_ms) {
    if (!set || !data) return E_INVALID_ARGUMENT;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    int rc = injected(__func__);
    if (rc != OK) {
        pthread_mutex_unlock(&lock);
        return rc;
    }
    while ((rc = take_event(set, data)) == E_TIMEOUT) {
        if (pthread_cond_timedwait(&events_queued, &lock, &deadline) != 0) {
            rc = take_event(set, data);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int nvmlEventSetFree(fake_event_set *set) {
    if (!set) return E_INVALID_ARGUMENT;
    free(set);
    return OK;
}
