from suanli_trainer_agent.main import main

main()
