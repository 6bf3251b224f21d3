#ifndef MERGE_CYAML_SHIM_H
#define MERGE_CYAML_SHIM_H
#include <yaml.h>
#endif
