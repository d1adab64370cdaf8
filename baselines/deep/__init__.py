"""Deep models: CNN, multi-task CNN, timm backbones +/- SE, BCNN, Fast BCNN. torch is imported lazily."""
