/* vmlet: the node-local CLI. Option parsing only; the work is in agent-core. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int main(int argc, char **argv)
{
  setlocale(LC_ALL, "");
  return vmlet_cli_main(argc, argv);
}
