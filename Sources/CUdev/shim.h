#ifndef CELLPROV_CUDEV_SHIM_H
#define CELLPROV_CUDEV_SHIM_H
#include <libudev.h>
#endif
