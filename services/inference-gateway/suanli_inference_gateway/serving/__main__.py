from suanli_inference_gateway.serving.main import main

main()
