#include "ctoml_shim.h"

#include <cstring>
#include <iterator>
#include <new>
#include <string_view>

#include <toml++/toml.h>

namespace {
const toml::node *node(const ctoml_node *n) { return reinterpret_cast<const toml::node *>(n); }
const ctoml_node *wrap(const toml::node *n) { return reinterpret_cast<const ctoml_node *>(n); }

void copy_error(std::string_view what, char *error, size_t error_size) {
    if (error == nullptr || error_size == 0) return;
    size_t n = what.size() < error_size - 1 ? what.size() : error_size - 1;
    std::memcpy(error, what.data(), n);
    error[n] = '\0';
}
}  // namespace

extern "C" {

ctoml_node *ctoml_parse(const char *text, size_t length, char *error, size_t error_size, uint32_t *error_line) {
    try {
        auto *root = new toml::table(toml::parse(std::string_view(text, length)));
        return reinterpret_cast<ctoml_node *>(static_cast<toml::node *>(root));
    } catch (const toml::parse_error &e) {
        copy_error(e.description(), error, error_size);
        if (error_line) *error_line = static_cast<uint32_t>(e.source().begin.line);
    } catch (const std::bad_alloc &) {
        copy_error("out of memory", error, error_size);
        if (error_line) *error_line = 0;
    } catch (...) {
        copy_error("cannot parse", error, error_size);
        if (error_line) *error_line = 0;
    }
    return nullptr;
}

void ctoml_free(ctoml_node *root) { delete reinterpret_cast<toml::node *>(root); }

ctoml_type ctoml_node_type(const ctoml_node *n) {
    switch (node(n)->type()) {
    case toml::node_type::table: return CTOML_TABLE;
    case toml::node_type::array: return CTOML_ARRAY;
    case toml::node_type::string: return CTOML_STRING;
    case toml::node_type::integer: return CTOML_INTEGER;
    case toml::node_type::floating_point: return CTOML_FLOAT;
    case toml::node_type::boolean: return CTOML_BOOLEAN;
    case toml::node_type::date: return CTOML_DATE;
    case toml::node_type::time: return CTOML_TIME;
    case toml::node_type::date_time: return CTOML_DATE_TIME;
    default: return CTOML_NONE;
    }
}

size_t ctoml_count(const ctoml_node *n) {
    if (auto *t = node(n)->as_table()) return t->size();
    if (auto *a = node(n)->as_array()) return a->size();
    return 0;
}

const char *ctoml_table_key(const ctoml_node *n, size_t index, size_t *length) {
    auto *t = node(n)->as_table();
    if (t == nullptr || index >= t->size()) return nullptr;
    auto it = std::next(t->cbegin(), static_cast<std::ptrdiff_t>(index));
    *length = it->first.str().size();
    return it->first.str().data();
}

const ctoml_node *ctoml_table_value(const ctoml_node *n, size_t index) {
    auto *t = node(n)->as_table();
    if (t == nullptr || index >= t->size()) return nullptr;
    return wrap(&std::next(t->cbegin(), static_cast<std::ptrdiff_t>(index))->second);
}

const ctoml_node *ctoml_array_element(const ctoml_node *n, size_t index) {
    auto *a = node(n)->as_array();
    if (a == nullptr || index >= a->size()) return nullptr;
    return wrap(a->get(index));
}

const char *ctoml_string(const ctoml_node *n, size_t *length) {
    auto *s = node(n)->as_string();
    if (s == nullptr) return nullptr;
    *length = s->get().size();
    return s->get().data();
}

int64_t ctoml_integer(const ctoml_node *n) {
    auto *i = node(n)->as_integer();
    return i ? i->get() : 0;
}

int ctoml_boolean(const ctoml_node *n) {
    auto *b = node(n)->as_boolean();
    return b && b->get() ? 1 : 0;
}

}  // extern "C"
