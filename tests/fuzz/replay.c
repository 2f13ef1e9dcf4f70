/* Replays corpus files through the fuzz target as an ordinary test: every input that ever
 * found a bug, plus the golden specs, must keep passing without libFuzzer. */
#include <stdint.h>
#include <stdio.h>

#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
  guint n = 0;
  for (int i = 1; i < argc; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) dir = g_dir_open(argv[i], 0, &error);
    if (!dir) {
      fprintf(stderr, "%s\n", error->message);
      return 1;
    }
    const char *name;
    while ((name = g_dir_read_name(dir))) {
      g_autofree char *path = g_build_filename(argv[i], name, NULL);
      if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
        continue;
      g_autofree char *data = NULL;
      gsize len = 0;
      if (!g_file_get_contents(path, &data, &len, &error)) {
        fprintf(stderr, "%s\n", error->message);
        return 1;
      }
      LLVMFuzzerTestOneInput((const uint8_t *)data, len);
      n++;
    }
  }
  printf("replayed %u inputs\n", n);
  /* An empty corpus would make this test pass while checking nothing. */
  return n >= 20 ? 0 : 1;
}
