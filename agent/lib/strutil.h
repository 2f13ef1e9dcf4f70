/* Small string helpers shared by the core. */
#pragma once

#include <string.h>

#include <glib.h>

/* Orders an array of char * (qsort, g_ptr_array_sort: both pass pointers to elements). */
static inline int vmlet_compare_str_ptrs(gconstpointer a, gconstpointer b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}
