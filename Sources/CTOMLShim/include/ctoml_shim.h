// The daemon's configuration parser: toml++ (Debian's libtomlplusplus-dev, compiled here header-only) behind a C
// interface, so that cellprovd reads TOML without TOMLKit, whose Swift layer imports Foundation and so brings
// Foundation and ICU's data into the installed program (issue 8, docs/decisions.md).
#ifndef CTOML_SHIM_H
#define CTOML_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CTOML_NONE = 0,
    CTOML_TABLE,
    CTOML_ARRAY,
    CTOML_STRING,
    CTOML_INTEGER,
    CTOML_FLOAT,
    CTOML_BOOLEAN,
    CTOML_DATE,
    CTOML_TIME,
    CTOML_DATE_TIME,
} ctoml_type;

typedef struct ctoml_node ctoml_node;

/// Parses `length` bytes of TOML. NULL on a syntax error: its description (NUL-terminated, cut to `error_size`)
/// and 1-based line are written to `error` and `error_line`. Free the result with ctoml_free.
ctoml_node *ctoml_parse(const char *text, size_t length, char *error, size_t error_size, uint32_t *error_line);
void ctoml_free(ctoml_node *root);

ctoml_type ctoml_node_type(const ctoml_node *node);
/// The entries of a table or the elements of an array (0 for anything else).
size_t ctoml_count(const ctoml_node *node);
/// A table's key and value at `index` (in the table's order), NULL when out of range or not a table.
const char *ctoml_table_key(const ctoml_node *table, size_t index, size_t *length);
const ctoml_node *ctoml_table_value(const ctoml_node *table, size_t index);
const ctoml_node *ctoml_array_element(const ctoml_node *array, size_t index);
/// A string's bytes (not NUL-terminated: TOML strings may hold U+0000 escapes), NULL if not a string.
const char *ctoml_string(const ctoml_node *node, size_t *length);
int64_t ctoml_integer(const ctoml_node *node);
int ctoml_boolean(const ctoml_node *node);

#ifdef __cplusplus
}
#endif

#endif
