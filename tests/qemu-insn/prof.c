/* Guest instructions per translation block under qemu-user, written to a file at exit:
 * the instruction-count profile that tests/qemu/insn-profile.sh folds into functions.
 * The plugin ABI subset of plugin_abi.h, as insn.c.
 * build: tests/qemu-insn/build.sh prof (gcc -shared -fPIC -O2 -o libprof.so prof.c -lpthread)
 * use:   qemu-aarch64 -cpu cortex-a76 -plugin ./libprof.so,out=OUT -d plugin ./prog
 * OUT gets one line per block start address: "vaddr instructions-per-run runs". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plugin_abi.h"
__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One slot per (start address, length): a block retranslated with the same shape keeps
 * its counter. Open addressing; slots are never freed, the table never moves. */
struct slot { uint64_t vaddr; uint64_t n_insns; uint64_t runs; int used; };
#define SLOTS (1u << 21)
static struct slot *table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096] = "insn-profile.txt";
static int overflow;

static struct slot *slot_for(uint64_t vaddr, uint64_t n) {
    uint64_t h = (vaddr ^ (n << 48)) * 0x9E3779B97F4A7C15ull;
    for (uint32_t probe = 0; probe < SLOTS; probe++) {
        struct slot *s = &table[(h + probe) & (SLOTS - 1)];
        if (!s->used) { s->used = 1; s->vaddr = vaddr; s->n_insns = n; return s; }
        if (s->vaddr == vaddr && s->n_insns == n) return s;
    }
    return NULL;
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    uint64_t n = qemu_plugin_tb_n_insns(tb);
    pthread_mutex_lock(&lock);
    struct slot *s = slot_for(qemu_plugin_tb_vaddr(tb), n);
    pthread_mutex_unlock(&lock);
    if (s) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &s->runs, 1);
    else overflow = 1;
}

static void on_exit_cb(qemu_plugin_id_t id, void *p) {
    FILE *f = fopen(out_path, "w");
    if (!f) { qemu_plugin_outs("insn-profile: cannot write the profile\n"); return; }
    for (uint32_t i = 0; i < SLOTS; i++)
        if (table[i].used && table[i].runs)
            fprintf(f, "%llx %llu %llu\n", (unsigned long long)table[i].vaddr,
                    (unsigned long long)table[i].n_insns, (unsigned long long)table[i].runs);
    fclose(f);
    if (overflow) qemu_plugin_outs("insn-profile: table full, profile incomplete\n");
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *v = argv[i];
        if (!strncmp(v, "out=", 4)) snprintf(out_path, sizeof out_path, "%s", v + 4);
    }
    table = calloc(SLOTS, sizeof *table);
    if (!table) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
