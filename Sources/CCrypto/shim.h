#ifndef MERGE_CCRYPTO_SHIM_H
#define MERGE_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#endif
