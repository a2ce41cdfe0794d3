#ifndef CELLPROV_CSWIFTCONCURRENCYHOOKS_SHIM_H
#define CELLPROV_CSWIFTCONCURRENCYHOOKS_SHIM_H
// The Swift concurrency runtime's global-executor hooks (swift/Runtime/Concurrency.h, exported by
// libswift_Concurrency, statically linked or not). Their real types are pointers to swiftcall functions, which C
// cannot import into Swift; declared here as plain pointers, the Swift side stores @convention(thin) functions
// into them (same size, same calling convention). Used by CellprovDaemon's DaemonExecutor only.
extern void *_Nullable swift_task_enqueueGlobal_hook;
extern void *_Nullable swift_task_enqueueGlobalWithDelay_hook;
extern void *_Nullable swift_task_enqueueGlobalWithDeadline_hook;

/// Sets the three hooks (the global one last: once it is set, every new job takes the new path).
static inline void cellprov_set_global_executor_hooks(
    void *_Nullable global, void *_Nullable delay, void *_Nullable deadline) {
    swift_task_enqueueGlobalWithDelay_hook = delay;
    swift_task_enqueueGlobalWithDeadline_hook = deadline;
    swift_task_enqueueGlobal_hook = global;
}

/// Whether the global hook is set.
static inline int cellprov_global_executor_hooked(void) { return swift_task_enqueueGlobal_hook != 0; }
#endif
