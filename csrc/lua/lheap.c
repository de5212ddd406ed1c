/* lheap.c: the Lua allocator of each VM: a memory limit per VM, and the heap
 * of each process (max_heap_size).
 *
 * Every VM allocates through mbl_alloc, which forwards to the VM's base
 * allocator. `used` is the VM's total; a process is charged what is
 * allocated, and credited what is freed, while it runs (its `heap`). That is
 * an estimate: the GC steps a process triggers may free another's garbage. So
 * passing max_heap_size is confirmed at the end of the slice (mbl_heap_check)
 * by a full collection: if the whole VM then holds less than the limit, the
 * process cannot be over it and goes on; otherwise it ends with reason
 * "max_heap_size". Allocation fails outright (a Lua memory error) past twice
 * the limit, or past the VM's limit, so one runaway process cannot take the
 * memory of other VMs. Lua never sees a failure when a block shrinks. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "lmb.h"

void *mbl_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mbl_vm_t *vm = ud;
  int64_t delta = (int64_t)nsize - (ptr ? (int64_t)osize : 0);
  mbl_proc_t *lp = vm->running;
  if (delta > 0) {
    if (vm->max_memory && vm->used + delta > vm->max_memory) return NULL;
    if (lp && lp->max_heap && lp->heap + delta > lp->max_heap) {
      if (lp->heap + delta > 2 * lp->max_heap) {
        lp->heap_over = 2; /* no doubt left: it ends at the end of this run */
        return NULL;
      }
      if (!lp->heap_over) {
        lp->heap_over = 1;
        mbl_preempt(lp); /* end the slice soon: the check runs then */
      }
    }
  }
  void *p = vm->base_f(vm->base_ud, ptr, osize, nsize);
  if (p || nsize == 0) {
    vm->used += delta;
    if (lp) lp->heap += delta;
  }
  return p;
}

int64_t mbl_default_vm_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || size <= 0) return 0;
  return (int64_t)pages * size / 4 * 3;
}

void mbl_heap_attach(mbl_vm_t *vm) {
  vm->base_f = lua_getallocf(vm->L, &vm->base_ud);
  vm->used = (int64_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + lua_gc(vm->L, LUA_GCCOUNTB, 0);
  lua_setallocf(vm->L, mbl_alloc, vm);
}

void mbl_heap_detach(mbl_vm_t *vm) {
  if (vm->base_f) lua_setallocf(vm->L, vm->base_f, vm->base_ud);
}

int mbl_heap_check(mbl_proc_t *lp) {
  if (!lp->heap_over) return 0;
  mbl_vm_t *vm = lp->vm;
  if (lp->heap_over == 1) {
    lua_gc(vm->L, LUA_GCCOLLECT); /* runs with no process charged */
    if (vm->used <= lp->max_heap) {
      lp->heap = vm->used; /* an upper bound of what it holds */
      lp->heap_over = 0;
      return 0;
    }
  }
  return 1;
}

void mbl_heap_release(mbl_proc_t *lp) {
  mbl_vm_t *vm = lp->vm;
  const int64_t big = 1 << 20;
  if (lp->heap < big) return;
  /* what a process that held much leaves behind goes back now, not at the
   * VM's next cycle */
  if (lp->heap > vm->used / 4) lua_gc(vm->L, LUA_GCCOLLECT);
  else lua_gc(vm->L, LUA_GCSTEP, (int)(lp->heap / 1024));
}
