#pragma once

int vmlet_cli_main(int argc, char **argv);
