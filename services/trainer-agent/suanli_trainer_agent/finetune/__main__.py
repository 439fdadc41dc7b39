import sys

from suanli_trainer_agent.finetune.cli import main

sys.exit(main())
