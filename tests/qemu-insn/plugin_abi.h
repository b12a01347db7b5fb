/* The few QEMU TCG plugin entry points insn.c and prof.c use, declared here so that
 * neither qemu-plugin.h nor glib headers are needed (Debian 12 packages no
 * qemu-plugin.h). Plugin API version 1, as Debian 12's QEMU 7.2 expects: each plugin
 * defines `qemu_plugin_version` itself. */
#ifndef CLIP_EDGE_QEMU_PLUGIN_ABI_H
#define CLIP_EDGE_QEMU_PLUGIN_ABI_H
#include <stddef.h>
#include <stdint.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);
void qemu_plugin_outs(const char *);
#endif
